//! Status codes from return values: the public `HttpStatus` trait, `Result` halves that
//! implement it, and any other type.
use perfmon_runtime::{collector, track_api, HttpStatus};

struct Created;
impl HttpStatus for Created {
    fn http_status(&self) -> u16 {
        201
    }
}

enum ApiError {
    NotFound,
    Conflict,
}
impl HttpStatus for ApiError {
    fn http_status(&self) -> u16 {
        match self {
            ApiError::NotFound => 404,
            ApiError::Conflict => 409,
        }
    }
}

struct Opaque;

#[track_api(path = "/both")]
fn both(ok: bool) -> Result<Created, ApiError> {
    if ok {
        Ok(Created)
    } else {
        Err(ApiError::Conflict)
    }
}

#[track_api(path = "/err-only")]
fn err_only(ok: bool) -> Result<Opaque, ApiError> {
    if ok {
        Ok(Opaque)
    } else {
        Err(ApiError::NotFound)
    }
}

#[track_api(path = "/ok-only")]
fn ok_only(ok: bool) -> Result<Created, Opaque> {
    if ok {
        Ok(Created)
    } else {
        Err(Opaque)
    }
}

#[track_api(path = "/plain-result")]
fn plain_result(ok: bool) -> Result<Opaque, Opaque> {
    if ok {
        Ok(Opaque)
    } else {
        Err(Opaque)
    }
}

#[track_api(path = "/value")]
fn value() -> Created {
    Created
}

#[track_api(path = "/anything")]
fn anything() -> Vec<Opaque> {
    vec![Opaque]
}

#[track_api(path = "/generic")]
fn generic<T>(t: T) -> T {
    t
}

fn codes(path: &str) -> Vec<(u16, u64)> {
    collector().api_stats_for(path).status_codes.into_iter().collect()
}

fn main() {
    let _ = (both(true), both(false), err_only(true), err_only(false));
    let _ = (ok_only(true), ok_only(false), plain_result(true), plain_result(false));
    let _ = (value(), anything(), generic(1u8));
    assert_eq!(codes("/both"), vec![(201, 1), (409, 1)]);
    assert_eq!(codes("/err-only"), vec![(200, 1), (404, 1)]);
    assert_eq!(codes("/ok-only"), vec![(201, 1), (500, 1)]);
    assert_eq!(codes("/plain-result"), vec![(200, 1), (500, 1)]);
    assert_eq!(codes("/value"), vec![(201, 1)]);
    assert_eq!(codes("/anything"), vec![(200, 1)]);
    assert_eq!(codes("/generic"), vec![(200, 1)]);
    let all = collector().api_stats();
    assert_eq!(all.total_requests, 11);
    // 409, 404 are client errors; two 500s are server errors
    assert_eq!(all.client_error_rate, 200.0 / 11.0);
    assert_eq!(all.server_error_rate, 200.0 / 11.0);
}
