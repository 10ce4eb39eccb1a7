//! Windows and scopes of a read, and the time constants of the in-memory window and the tiers.

use std::time::Duration;

/// Minutes in the in-memory window: the current minute and the four before it.
pub const WINDOW_MINUTES: u64 = 5;
/// Nanoseconds in a minute.
pub(crate) const NS_PER_MINUTE: u64 = 60_000_000_000;
/// Minutes in a bucket of the medium (5-minute) tier.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) const BUCKET_MINUTES: u64 = 5;
/// Slow requests kept per minute (the slow list is the top of these over the window).
pub const SLOW_LIST_SIZE: usize = 50;
/// Requests kept in the last-requests list.
pub const RECENT_REQUESTS: usize = 100;

/// How far back a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last 5 minutes (`5m`).
    Minutes5,
    /// The last hour (`1h`).
    Hour1,
    /// The last 24 hours (`24h`).
    Hours24,
    /// The last 7 days (`7d`).
    Days7,
    /// The last 90 days (`90d`).
    Days90,
    /// The last year (`1y`).
    Year1,
}

impl Window {
    /// The HTTP parameter value: `5m`, `1h`, `24h`, `7d`, `90d`, `1y`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minutes5 => "5m",
            Window::Hour1 => "1h",
            Window::Hours24 => "24h",
            Window::Days7 => "7d",
            Window::Days90 => "90d",
            Window::Year1 => "1y",
        }
    }

    /// Every window, shortest first.
    pub const ALL: [Window; 6] = [
        Window::Minutes5,
        Window::Hour1,
        Window::Hours24,
        Window::Days7,
        Window::Days90,
        Window::Year1,
    ];

    /// Parses the HTTP parameter value.
    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.as_str() == s)
    }

    /// Its length.
    pub fn duration(self) -> Duration {
        let minutes = match self {
            Window::Minutes5 => 5,
            Window::Hour1 => 60,
            Window::Hours24 => 1440,
            Window::Days7 => 7 * 1440,
            Window::Days90 => 90 * 1440,
            Window::Year1 => 365 * 1440,
        };
        Duration::from_secs(minutes * 60)
    }
}

/// Whose statistics a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// This instance only (`instance`).
    Instance,
    /// Every instance writing to the same stores (`cluster`).
    Cluster,
}

impl Scope {
    /// The HTTP parameter value: `instance`, `cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Instance => "instance",
            Scope::Cluster => "cluster",
        }
    }

    /// Parses the HTTP parameter value.
    pub fn parse(s: &str) -> Option<Scope> {
        [Scope::Instance, Scope::Cluster]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}
