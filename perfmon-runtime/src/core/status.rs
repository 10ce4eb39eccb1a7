//! How a tracked fn's return value becomes an HTTP status code or an outcome.

/// The HTTP status code a value stands for. Implement it on your handlers' return and error
/// types so that `#[track_api]` records the status they really produce.
///
/// Without it, `#[track_api]` still compiles for any return type: `Ok(_)` counts as 200, `Err(_)`
/// as 500, and any other value as 200. A `Result<T, E>` uses `T`'s or `E`'s own status where
/// they implement this trait.
///
/// ```
/// use perfmon_runtime::HttpStatus;
///
/// enum ApiError { NotFound, Invalid }
///
/// impl HttpStatus for ApiError {
///     fn http_status(&self) -> u16 {
///         match self {
///             ApiError::NotFound => 404,
///             ApiError::Invalid => 422,
///         }
///     }
/// }
/// ```
pub trait HttpStatus {
    /// The status code, 100–599.
    fn http_status(&self) -> u16;
}

impl<T: HttpStatus, E: HttpStatus> HttpStatus for Result<T, E> {
    fn http_status(&self) -> u16 {
        match self {
            Ok(v) => v.http_status(),
            Err(e) => e.http_status(),
        }
    }
}

impl<T: HttpStatus + ?Sized> HttpStatus for &T {
    fn http_status(&self) -> u16 {
        (**self).http_status()
    }
}

impl<T: HttpStatus + ?Sized> HttpStatus for Box<T> {
    fn http_status(&self) -> u16 {
        (**self).http_status()
    }
}

/// Autoref-specialized probes used by the macro expansions (`__private::status`): the first
/// level whose bounds hold wins, so every return type compiles.
pub mod probe {
    use super::HttpStatus;
    use crate::core::kind::{CACHE_ERROR, FAILED, HIT, MISS, OK};

    /// Wraps a reference to the return value.
    pub struct Probe<'a, T: ?Sized>(pub &'a T);

    /// Level 1: the value knows its status.
    pub trait ViaHttpStatus {
        /// The status code.
        fn __perfmon_status(&self) -> u16;
    }
    impl<T: HttpStatus + ?Sized> ViaHttpStatus for &&&&Probe<'_, T> {
        fn __perfmon_status(&self) -> u16 {
            self.0.http_status()
        }
    }

    /// Level 2: a `Result` whose error knows its status.
    pub trait ViaResultErr {
        /// The status code.
        fn __perfmon_status(&self) -> u16;
    }
    impl<T, E: HttpStatus> ViaResultErr for &&&Probe<'_, Result<T, E>> {
        fn __perfmon_status(&self) -> u16 {
            match self.0 {
                Ok(_) => 200,
                Err(e) => e.http_status(),
            }
        }
    }

    /// Level 3: a `Result` whose success value knows its status.
    pub trait ViaResultOk {
        /// The status code.
        fn __perfmon_status(&self) -> u16;
    }
    impl<T: HttpStatus, E> ViaResultOk for &&Probe<'_, Result<T, E>> {
        fn __perfmon_status(&self) -> u16 {
            match self.0 {
                Ok(v) => v.http_status(),
                Err(_) => 500,
            }
        }
    }

    /// Level 4: any `Result`.
    pub trait ViaResult {
        /// The status code.
        fn __perfmon_status(&self) -> u16;
    }
    impl<T, E> ViaResult for &Probe<'_, Result<T, E>> {
        fn __perfmon_status(&self) -> u16 {
            if self.0.is_ok() {
                200
            } else {
                500
            }
        }
    }

    /// Level 5: anything else.
    pub trait ViaAny {
        /// The status code.
        fn __perfmon_status(&self) -> u16;
    }
    impl<T: ?Sized> ViaAny for Probe<'_, T> {
        fn __perfmon_status(&self) -> u16 {
            200
        }
    }

    /// Queries and batches: an `Err` is a failure.
    pub trait OutcomeResult {
        /// 0 for success, 1 for failure.
        fn __perfmon_outcome(&self) -> u16;
    }
    impl<T, E> OutcomeResult for &Probe<'_, Result<T, E>> {
        fn __perfmon_outcome(&self) -> u16 {
            if self.0.is_ok() {
                OK
            } else {
                FAILED
            }
        }
    }

    /// Queries and batches: any other value is a success.
    pub trait OutcomeAny {
        /// 0 for success.
        fn __perfmon_outcome(&self) -> u16;
    }
    impl<T: ?Sized> OutcomeAny for Probe<'_, T> {
        fn __perfmon_outcome(&self) -> u16 {
            OK
        }
    }

    /// What `#[track_cache]` accepts as a return type.
    #[diagnostic::on_unimplemented(
        message = "`#[track_cache]` needs a fn returning `Option<T>` or `Result<Option<T>, E>`, not `{Self}`",
        label = "a cache lookup returns `Some` for a hit, `None` for a miss, `Err` for an error"
    )]
    pub trait CacheOutcome {
        /// 0 hit, 1 miss, 2 error.
        fn __perfmon_cache(&self) -> u16;
    }
    impl<T> CacheOutcome for Option<T> {
        fn __perfmon_cache(&self) -> u16 {
            if self.is_some() {
                HIT
            } else {
                MISS
            }
        }
    }
    impl<T, E> CacheOutcome for Result<Option<T>, E> {
        fn __perfmon_cache(&self) -> u16 {
            match self {
                Ok(Some(_)) => HIT,
                Ok(None) => MISS,
                Err(_) => CACHE_ERROR,
            }
        }
    }

    /// The cache outcome of a return value.
    #[inline(always)]
    pub fn cache_outcome<R: CacheOutcome>(r: &R) -> u16 {
        r.__perfmon_cache()
    }
}
