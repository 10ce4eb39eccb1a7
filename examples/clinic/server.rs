//! The HTTP server: hyper's HTTP/1.1 connection driver with the limits a server facing clients
//! it does not control needs, which `axum::serve` does not set: a client that opens a connection
//! and sends its request headers slowly (or never) is cut off after [`HEADER_READ_TIMEOUT`]
//! instead of holding a connection and a task for ever (slowloris).

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long a client may take to send a request's headers.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // out of file descriptors and the like: wait a little rather than spin
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}
