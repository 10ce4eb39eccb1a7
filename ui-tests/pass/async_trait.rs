//! `#[async_trait]` impls: the boxed future is timed, not its construction.
use async_trait::async_trait;
use perfmon_runtime::{collector, track_api, track_query};
use std::time::Duration;

#[async_trait]
trait Repo {
    async fn find(&self, id: u32) -> Result<u32, String>;
    async fn slow(&self) -> u32;
}

struct Pg;

#[async_trait]
impl Repo for Pg {
    #[track_query(table = "Staff", kind = "read", op = "findUnique")]
    async fn find(&self, id: u32) -> Result<u32, String> {
        if id == 0 {
            return Err("none".into());
        }
        Ok(id)
    }

    #[track_api(path = "/async-trait/slow")]
    async fn slow(&self) -> u32 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        3
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let repo: Box<dyn Repo + Send + Sync> = Box::new(Pg);
    assert_eq!(repo.find(1).await, Ok(1));
    assert!(repo.find(0).await.is_err());
    assert_eq!(repo.slow().await, 3);
    let db = collector().database_stats();
    let op = &db.tables["Staff"].operations["findUnique"];
    assert_eq!((op.reads, op.errors), (2, 1));
    let api = collector().api_stats_for("/async-trait/slow");
    assert!(api.max_duration >= Duration::from_millis(15), "{api:?}");
}
