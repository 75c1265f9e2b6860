//! The dashboard: server-rendered HTML on the ops endpoint — an overview
//! (`/`), the queue (`/queue`), one paper (`/paper/ID`), a login form, and
//! retry / cancel / re-queue actions (`POST /actions/…`).
//!
//! Pages are minijinja templates (auto-escaped: every title, error and
//! model name is text), charts are inline SVG drawn here (`svg`), reports
//! are Markdown rendered without raw HTML (`markdown`). The only script is
//! `/assets/dash.js` (auto-refresh, confirmations); every response carries
//! a Content-Security-Policy that allows nothing but this origin's own
//! stylesheet and script, so injected markup could not run even if it got
//! through.
//!
//! Access (`guard`, which also covers `/metrics`, `/status`, `/signal`):
//! on loopback without a token everything is readable and nothing can be
//! changed; with a token every page needs it — as a bearer header, or as
//! the session cookie `POST /login` sets (`auth`) — and every action also
//! needs the page's CSRF token. Off loopback without a token everything is
//! refused.

pub mod actions;
pub mod auth;
pub mod markdown;
pub mod pages;
pub mod svg;

use super::http::OpsState;
use auth::{Keys, Viewer};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use minijinja::Environment;
use std::sync::{Arc, LazyLock};

/// The policy every response carries: this origin's stylesheet and script
/// only, no inline script or style, forms post only here, no framing.
pub const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'";

/// Who may do what; built once by `http::serve`.
#[derive(Clone)]
pub struct Gate {
    /// Derived from the configured token (None: no token).
    pub keys: Option<Keys>,
    /// Off loopback without a token: refuse everything.
    pub closed: bool,
}

/// What a handler learns about the request from [`guard`].
#[derive(Clone)]
pub struct Access {
    pub viewer: Viewer,
    pub gate: Arc<Gate>,
}

impl Access {
    /// The CSRF token forms must carry (None when the viewer may not act).
    pub fn csrf(&self) -> Option<String> {
        self.gate.keys.as_ref().and_then(|k| k.csrf(&self.viewer))
    }

    fn viewer_name(&self) -> &'static str {
        match self.viewer {
            Viewer::ReadOnly => "read-only",
            Viewer::Bearer => "bearer",
            Viewer::Session(_) => "session",
            Viewer::Anonymous => "anonymous",
        }
    }
}

/// The dashboard's routes (merged into the ops router by `http::serve`).
pub fn routes() -> Router<OpsState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/queue", get(pages::queue))
        .route("/paper/{*id}", get(pages::paper))
        .route("/login", get(actions::login_form).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/actions/{action}", post(actions::act))
        .route("/assets/dash.css", get(css))
        .route("/assets/dash.js", get(js))
}

/// Paths served to anyone who may reach the endpoint at all.
fn public(path: &str) -> bool {
    matches!(path, "/login" | "/assets/dash.css" | "/assets/dash.js")
}

/// Machine endpoints answer 401; pages send a browser to the login form.
fn api(path: &str) -> bool {
    matches!(path, "/metrics" | "/status" | "/healthz" | "/signal")
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Decide who is asking, refuse or redirect who may not, and put the
/// security headers on every response.
pub async fn guard(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let viewer = if gate.closed {
        None
    } else {
        match &gate.keys {
            None => Some(Viewer::ReadOnly),
            Some(keys) => {
                let bearer = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .is_some_and(|t| keys.is_token(t));
                let session = req
                    .headers()
                    .get_all(header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter_map(auth::session_cookie)
                    .find(|v| keys.valid_session(v, now_unix()))
                    .map(str::to_string);
                Some(if bearer {
                    Viewer::Bearer
                } else if let Some(s) = session {
                    Viewer::Session(s)
                } else {
                    Viewer::Anonymous
                })
            }
        }
    };
    let mut resp = match viewer {
        Some(Viewer::Anonymous) if !public(&path) => {
            if req.method() == Method::GET && !api(&path) {
                let next = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                let to = format!("/login?next={}", pages::url_encode(&next));
                (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
            } else {
                unauthorized()
            }
        }
        Some(viewer) => {
            req.extensions_mut().insert(Access {
                viewer,
                gate: gate.clone(),
            });
            next.run(req).await
        }
        None => unauthorized(),
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it Chromium sends `Origin: null` on the
    // dashboard's own form posts, which the origin check must refuse.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token is required\n",
    )
        .into_response()
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/dash.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/dash.js"),
    )
        .into_response()
}

/// The templates, parsed once. A template that fails to parse is a bug
/// caught by the tests; it renders as a plain 500 rather than a panic.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // A missing value (no title, no error) shows as nothing, not "none".
    env.set_formatter(|out, state, value| {
        if value.is_none() || value.is_undefined() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    for (name, src) in [
        ("base.html", include_str!("templates/base.html")),
        ("overview.html", include_str!("templates/overview.html")),
        ("queue.html", include_str!("templates/queue.html")),
        ("paper.html", include_str!("templates/paper.html")),
        ("login.html", include_str!("templates/login.html")),
        ("error.html", include_str!("templates/error.html")),
    ] {
        if let Err(e) = env.add_template(name, src) {
            tracing::error!(template = name, error = %e, "dashboard template does not parse");
        }
    }
    env
});

/// Render `template` with `ctx` plus what every page shows (who is
/// looking, the CSRF token, the time and the database).
pub fn render(
    state: &OpsState,
    access: &Access,
    status: StatusCode,
    template: &str,
    ctx: minijinja::Value,
) -> Response {
    let common = minijinja::context! {
        viewer => access.viewer_name(),
        can_act => access.viewer.can_act(),
        csrf => access.csrf(),
        generated_at => pages::show_time(&super::fmt_ts(chrono::Utc::now())),
        db => super::super::store::pg::redact(&state.store.path().display().to_string()),
    };
    let ctx = minijinja::context! { ..ctx, ..common };
    match TEMPLATES.get_template(template).and_then(|t| t.render(ctx)) {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(template, error = %e, "dashboard page did not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the page did not render: {e}\n"),
            )
                .into_response()
        }
    }
}

/// An error page.
pub fn error_page(
    state: &OpsState,
    access: &Access,
    status: StatusCode,
    heading: &str,
    message: &str,
) -> Response {
    render(
        state,
        access,
        status,
        "error.html",
        minijinja::context! { heading, message },
    )
}
