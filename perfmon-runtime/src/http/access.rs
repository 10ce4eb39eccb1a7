//! Who may read the monitoring routes.
//!
//! With a monitoring token set (`PERFMON_MONITORING_TOKEN` or `ConfigBuilder::monitoring_token`),
//! every route of the monitoring router needs `Authorization: Bearer <token>`, except liveness,
//! readiness and the status and code of health (what Kubernetes probes need). A browser, which
//! cannot add a bearer header to a page it navigates to, may send the token as the password of
//! HTTP Basic authentication (any user name): the dashboard's 401 asks for it, and the browser
//! then sends it with the page's own requests.
//!
//! The comparison takes the same time whatever the supplied value: it depends on the length of
//! the configured token only.

use std::sync::{Arc, RwLock};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

/// The environment variable that sets the token when the configuration does not.
pub(crate) const TOKEN_VAR: &str = "PERFMON_MONITORING_TOKEN";

/// The token `init` installed: `None` until then (the environment variable is read instead),
/// `Some(None)` for no token.
static INSTALLED: RwLock<Option<Option<Arc<str>>>> = RwLock::new(None);

/// `PERFMON_MONITORING_TOKEN`, if set and not blank.
fn from_env() -> Option<Arc<str>> {
    let v = std::env::var(TOKEN_VAR).ok()?;
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    if !crate::core::secret::valid_token(v) {
        // still the token (locked is the safe side), but say it is weak, once
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(target: "perfmon", "PERFMON_MONITORING_TOKEN should be 16 to 256 printable ASCII characters without spaces; it is used as it is");
        });
    }
    Some(Arc::from(v))
}

/// Installs the token `init` was given: the configuration's, else the environment variable's
/// (a configuration built without `Config::from_env` still locks the routes when the variable
/// is set).
pub(crate) fn install_token(token: Option<&str>) {
    let token = token.map(Arc::from).or_else(from_env);
    *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = Some(token);
}

/// The token in force: the one `init` installed, else (before `init`)
/// `PERFMON_MONITORING_TOKEN`, so that routes served before `init` are locked as well.
fn token() -> Option<Arc<str>> {
    if let Some(t) = &*INSTALLED.read().unwrap_or_else(|e| e.into_inner()) {
        return t.clone();
    }
    from_env()
}

/// Whether `supplied` equals `expected`, in a time that depends on `expected`'s length only.
fn same(supplied: &[u8], expected: &[u8]) -> bool {
    let mut diff = (supplied.len() ^ expected.len()) as u64;
    for (i, e) in expected.iter().enumerate() {
        let s = supplied.get(i).copied().unwrap_or(!*e);
        diff |= u64::from(s ^ e);
        diff = std::hint::black_box(diff);
    }
    diff == 0
}

/// The secret a request's `Authorization` header carries: a bearer token, or the password of
/// Basic authentication.
fn presented(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    let rest = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        Some(rest.to_vec())
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        Some(decoded[colon + 1..].to_vec())
    } else {
        None
    }
}

/// What a request may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// No token is set, or the request carries it.
    Full,
    /// A token is set and the request does not carry it.
    Public,
}

/// What the request's headers allow.
pub(crate) fn access(headers: &HeaderMap) -> Access {
    match token() {
        None => Access::Full,
        Some(t) if presented(headers).is_some_and(|p| same(&p, t.as_bytes())) => Access::Full,
        Some(_) => Access::Public,
    }
}

/// How a 401 asks for the token: a bearer token from programs, a password from browsers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Challenge {
    Bearer,
    Browser,
}

/// `None` when the request may read a locked route, else the 401 to answer.
pub(crate) fn locked(headers: &HeaderMap, challenge: Challenge) -> Option<Response> {
    if access(headers) == Access::Full {
        return None;
    }
    let ask = match challenge {
        Challenge::Bearer => "Bearer realm=\"perfmon\"",
        Challenge::Browser => "Basic realm=\"perfmon\", charset=\"UTF-8\"",
    };
    let error = match challenge {
        Challenge::Bearer => "this route needs the monitoring token: send Authorization: Bearer <token> (the value of PERFMON_MONITORING_TOKEN)",
        Challenge::Browser => "this page needs the monitoring token: enter it as the password (any user name), or send Authorization: Bearer <token>",
    };
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "success": false, "error": error })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(ask));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison() {
        assert!(same(b"s3cret-token-0001", b"s3cret-token-0001"));
        assert!(!same(b"s3cret-token-0002", b"s3cret-token-0001"));
        assert!(!same(b"s3cret-token-000", b"s3cret-token-0001"));
        assert!(!same(b"s3cret-token-00011", b"s3cret-token-0001"));
        assert!(!same(b"", b"s3cret-token-0001"));
        // a supplied byte equal to the complement never matches by accident
        assert!(!same(&[0xff], &[0x00]));
    }

    #[test]
    fn schemes() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("ascii"),
            );
            presented(&h)
        };
        assert_eq!(with("Bearer abc"), Some(b"abc".to_vec()));
        assert_eq!(with("bearer   abc "), Some(b"abc".to_vec()));
        // "any:abc"
        assert_eq!(with("Basic YW55OmFiYw=="), Some(b"abc".to_vec()));
        assert_eq!(with("Basic !!!"), None);
        assert_eq!(with("Digest abc"), None);
        assert_eq!(with("Bearer"), None);
        assert_eq!(presented(&HeaderMap::new()), None);
    }
}
