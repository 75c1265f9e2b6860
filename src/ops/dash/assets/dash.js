// paper-runner dashboard: the only script. Auto-refresh (the page says how
// often in <body data-refresh>, the checkbox turns it off and the choice is
// remembered) and a confirmation before destructive actions.
(function () {
  "use strict";
  var secs = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  var box = document.getElementById("autorefresh");
  var key = "paper-runner-autorefresh";
  var timer = null;
  function on() {
    try { return window.localStorage.getItem(key) !== "off"; } catch (e) { return true; }
  }
  function schedule() {
    if (timer) { clearTimeout(timer); timer = null; }
    if (secs > 0 && (!box || box.checked)) {
      timer = setTimeout(function () { window.location.reload(); }, secs * 1000);
    }
  }
  if (box) {
    box.checked = on();
    box.addEventListener("change", function () {
      try { window.localStorage.setItem(key, box.checked ? "on" : "off"); } catch (e) { /* private mode */ }
      schedule();
    });
  }
  schedule();
  var forms = document.querySelectorAll("form[data-confirm]");
  for (var i = 0; i < forms.length; i++) {
    forms[i].addEventListener("submit", function (ev) {
      if (!window.confirm(this.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  }
})();
