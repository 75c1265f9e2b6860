//! Report Markdown to HTML for the paper page. Reports are written from LLM
//! output, so they are untrusted: raw HTML in them is shown as text, never
//! passed through; links keep only http(s), mailto, in-page and relative
//! targets (a `javascript:` link becomes inert); images are shown as their
//! alt text and address (the page loads nothing from elsewhere).

use pulldown_cmark::{html, CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};

/// Largest report rendered; a longer one is cut (and says so).
pub const MAX_REPORT_BYTES: usize = 2 * 1024 * 1024;

fn safe_url(url: &str) -> bool {
    let u = url.trim().to_ascii_lowercase();
    if u.starts_with("http://") || u.starts_with("https://") || u.starts_with("mailto:") {
        return true;
    }
    // Relative or in-page: no scheme before the first '/', '?' or '#'.
    let head = u.split(['/', '?', '#']).next().unwrap_or("");
    !head.contains(':')
}

/// Render `md` (YAML frontmatter already removed) as HTML.
pub fn render(md: &str) -> String {
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(md, opts).map(|ev| match ev {
        Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
        Event::Start(Tag::Image { dest_url, .. }) => {
            Event::Text(CowStr::from(format!("[image {dest_url}: ")))
        }
        Event::End(TagEnd::Image) => Event::Text(CowStr::from("]")),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let dest_url = if safe_url(&dest_url) {
                dest_url
            } else {
                CowStr::from("#")
            };
            let link_type = if link_type == LinkType::Email {
                LinkType::Email
            } else {
                LinkType::Inline
            };
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            })
        }
        other => other,
    });
    let mut out = String::with_capacity(md.len() + md.len() / 2);
    html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_shown_as_text() {
        let out = render(
            "# Title\n\n<script>alert(1)</script>\n\nText <img src=x onerror=alert(1)> end\n",
        );
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
        assert!(out.contains("<h1>Title</h1>"), "{out}");
    }

    #[test]
    fn only_safe_links_keep_their_target() {
        let out = render("[a](javascript:alert(1)) [b](https://arxiv.org/abs/1) [c](#x) [d](  JaVaScRiPt:x) [e](data:text/html,x) [f](other/page)");
        assert!(!out.to_lowercase().contains("javascript:"), "{out}");
        assert!(!out.contains("data:"), "{out}");
        assert!(out.contains(r#"href="https://arxiv.org/abs/1""#), "{out}");
        assert!(out.contains(r##"href="#x""##), "{out}");
        assert!(out.contains(r#"href="other/page""#), "{out}");
    }

    #[test]
    fn images_become_text_and_tables_render() {
        let out = render(
            "![alt](https://evil.example/t.png)\n\n| a | b |\n|---|---|\n| 1 | <b>2</b> |\n",
        );
        assert!(!out.contains("<img"), "{out}");
        assert!(
            out.contains("[image https://evil.example/t.png: alt]"),
            "{out}"
        );
        assert!(out.contains("<table>"), "{out}");
        assert!(out.contains("&lt;b&gt;2&lt;/b&gt;"), "{out}");
    }
}
