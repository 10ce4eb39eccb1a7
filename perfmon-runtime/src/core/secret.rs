//! Credentials out of every message: URLs (backends, webhooks) as they may be shown in logs,
//! errors and `Debug` output; and what a monitoring token must be.

/// What a monitoring token must be.
pub(crate) const TOKEN_RULE: &str =
    "a monitoring token must be 16 to 256 printable ASCII characters without spaces";

/// Whether `t` is a monitoring token [`TOKEN_RULE`] allows.
pub(crate) fn valid_token(t: &str) -> bool {
    (16..=256).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic())
}

/// A URL — or a comma-separated list of them — with its password (`user:password@`), any
/// `password=`/`token=`-like query value, and a webhook's path (which often *is* the secret, as
/// in Slack's) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        // not a URL: at most `user:password@host`
        return match url.rfind('@') {
            Some(at) => match url[..at].split_once(':') {
                Some((user, _)) => format!("{user}:***{}", &url[at..]),
                None => url.to_string(),
            },
            None => url.to_string(),
        };
    };
    let scheme = &url[..scheme_end];
    let rest = &url[scheme_end..];
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!("{user}:***{}", &authority[at..]),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = if scheme.starts_with("http") && tail.len() > 1 {
        // a webhook's path and query are its secret
        "/***".to_string()
    } else {
        match tail.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if secret_key(k) => format!("{k}=***"),
                        _ => kv.to_string(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => tail.to_string(),
        }
    };
    format!("{scheme}{authority}{tail}")
}

fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    ["pass", "secret", "token", "key", "auth"]
        .iter()
        .any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_tokens_and_webhook_paths_are_hidden() {
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redact("redis://:pw@host/0"), "redis://:***@host/0");
        assert_eq!(
            redact("postgres://u:p@ss@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(redact("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(
            redact("postgres://db/x?sslmode=require&password=hunter2"),
            "postgres://db/x?sslmode=require&password=***"
        );
        assert_eq!(
            redact("redis+cluster://:pw@a:7000,b:7001"),
            "redis+cluster://:***@a:7000,b:7001"
        );
        assert_eq!(
            redact("redis://:pw@a:7000,redis://:pw@b:7001"),
            "redis://:***@a:7000,redis://:***@b:7001"
        );
        assert_eq!(
            redact("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(redact("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
    }
}
