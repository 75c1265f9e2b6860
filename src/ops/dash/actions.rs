//! The dashboard's writes: log in / out, and retry, cancel and re-queue a
//! paper. Each action is a form POST that must come from a viewer that
//! showed the token (bearer or session) and carry that viewer's CSRF
//! token; a browser's `Origin`, when sent, must be this endpoint. The
//! store does what `runner retry` / `runner cancel` do, so the dashboard
//! and the CLI cannot disagree.

use super::auth::{self, same, Viewer};
use super::{error_page, render, Access};
use crate::ops::http::OpsState;
use crate::store::StoreError;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

/// Where to go after logging in: a path on this endpoint only (no
/// `//host`, no scheme), so the form cannot be used to redirect elsewhere.
fn local_target(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && n.len() <= 2048 =>
        {
            n.to_string()
        }
        _ => "/".into(),
    }
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
}

/// `GET /login`.
pub async fn login_form(
    State(state): State<OpsState>,
    Extension(access): Extension<Access>,
    Query(q): Query<LoginQuery>,
) -> Response {
    if access.viewer.can_act() {
        return see_other(&local_target(q.next.as_deref()));
    }
    render(
        &state,
        &access,
        StatusCode::OK,
        "login.html",
        minijinja::context! {
            no_token => access.gate.keys.is_none(),
            next => local_target(q.next.as_deref()),
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`: the token for a session cookie.
pub async fn login(
    State(state): State<OpsState>,
    Extension(access): Extension<Access>,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(keys) = access.gate.keys.as_ref() else {
        return see_other("/");
    };
    let next = local_target(f.next.as_deref());
    if !keys.is_token(&f.token) {
        tracing::warn!("dashboard login with a wrong token");
        return render(
            &state,
            &access,
            StatusCode::UNAUTHORIZED,
            "login.html",
            minijinja::context! { no_token => false, next, error => "That is not the token." },
        );
    }
    let session = keys.new_session(chrono::Utc::now().timestamp());
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, next),
            (header::SET_COOKIE, auth::set_cookie(Some(&session))),
        ],
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

/// Why a write is refused, if it is.
fn refuse(access: &Access, headers: &HeaderMap, csrf: &str) -> Option<(StatusCode, String)> {
    if matches!(access.viewer, Viewer::ReadOnly) {
        return Some((
            StatusCode::FORBIDDEN,
            "The dashboard is read-only: no token is configured (set ops.token_env and restart the runner).".into(),
        ));
    }
    let Some(want) = access.csrf() else {
        return Some((StatusCode::FORBIDDEN, "Log in first.".into()));
    };
    if !same(csrf.as_bytes(), want.as_bytes()) {
        return Some((
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or stale: reload the page and try again.".into(),
        ));
    }
    // A browser names the page the form was on; it must be this endpoint.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if origin_host.is_empty() || origin_host != host {
            return Some((
                StatusCode::FORBIDDEN,
                format!("The request came from another origin ({origin})."),
            ));
        }
    }
    None
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<OpsState>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some((code, why)) = refuse(&access, &headers, &f.csrf) {
        return error_page(&state, &access, code, "Not logged out", &why);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/login".to_string()),
            (header::SET_COOKIE, auth::set_cookie(None)),
        ],
    )
        .into_response()
}

/// `POST /actions/{retry|cancel|requeue}` with `id` and `csrf`.
pub async fn act(
    State(state): State<OpsState>,
    Extension(access): Extension<Access>,
    Path(action): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some((code, why)) = refuse(&access, &headers, &f.csrf) {
        return error_page(&state, &access, code, "Action refused", &why);
    }
    let id = f.id.trim().to_string();
    if id.is_empty() || id.len() > 512 {
        return error_page(
            &state,
            &access,
            StatusCode::BAD_REQUEST,
            "Action refused",
            "the form names no paper",
        );
    }
    let ids = vec![id.clone()];
    let result = match action.as_str() {
        "retry" => state
            .store
            .run(move |s| s.retry_papers(&ids, None).map(|v| !v.is_empty()))
            .await
            .map(|changed| if changed { "retried" } else { "nothing" }),
        "cancel" => state
            .store
            .run(move |s| s.cancel_papers(&ids).map(|v| !v.is_empty()))
            .await
            .map(|changed| if changed { "cancelled" } else { "nothing" }),
        "requeue" => state
            .store
            .run(move |s| s.requeue_papers(&ids).map(|v| !v.is_empty()))
            .await
            .map(|changed| if changed { "requeued" } else { "nothing" }),
        other => {
            return error_page(
                &state,
                &access,
                StatusCode::NOT_FOUND,
                "No such action",
                &format!("{other:?} is not an action (retry, cancel, requeue)"),
            )
        }
    };
    match result {
        Ok(done) => {
            tracing::info!(paper = %id, action = %action, outcome = done, "dashboard action");
            see_other(&format!("{}?done={done}", super::pages::paper_href(&id)))
        }
        Err(StoreError::NotFound(m)) => {
            error_page(&state, &access, StatusCode::NOT_FOUND, "Not found", &m)
        }
        Err(StoreError::Invalid(m)) => {
            error_page(&state, &access, StatusCode::CONFLICT, "Action refused", &m)
        }
        Err(e) => error_page(
            &state,
            &access,
            StatusCode::INTERNAL_SERVER_ERROR,
            "The action failed",
            &e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_redirects_stay_on_this_endpoint() {
        assert_eq!(
            local_target(Some("/queue?status=failed")),
            "/queue?status=failed"
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "queue",
            "/a\nb",
        ] {
            assert_eq!(local_target(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_target(None), "/");
    }
}
