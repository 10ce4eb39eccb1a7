//! The full matrix: each of the five macros on each fn shape, stamped out by one `macro_rules!`
//! so that no macro misses a shape. Every fn returns `Result<Option<_>, _>`, which all five
//! accept, and every call must be counted.
use async_trait::async_trait;
use perfmon_runtime::collector;
use std::fmt::Display;

#[derive(Debug)]
pub struct Oops;

macro_rules! shapes {
    ($module:ident, $($attr:tt)*) => {
        pub mod $module {
            use super::*;

            #[$($attr)*]
            pub fn sync_plain(x: u32) -> Result<Option<u32>, Oops> {
                Ok(Some(x))
            }

            #[$($attr)*]
            pub fn sync_question(s: &str) -> Result<Option<u32>, Oops> {
                let n: u32 = s.parse().map_err(|_| Oops)?;
                Ok(Some(n))
            }

            #[$($attr)*]
            pub fn sync_early(x: u32) -> Result<Option<u32>, Oops> {
                if x == 0 {
                    return Ok(None);
                }
                Ok(Some(x))
            }

            #[$($attr)*]
            pub fn generic<T: Clone + Into<u64>, const N: usize>(xs: [T; N]) -> Result<Option<u64>, Oops>
            where
                T: std::fmt::Debug,
            {
                Ok(xs.first().cloned().map(Into::into))
            }

            #[$($attr)*]
            pub fn impl_arg(x: impl Into<u32>) -> Result<Option<u32>, Oops> {
                Ok(Some(x.into()))
            }

            #[$($attr)*]
            pub fn impl_ret(x: u32) -> Result<Option<impl Display>, Oops> {
                Ok(Some(x))
            }

            #[$($attr)*]
            pub fn borrow<'a>(s: &'a str) -> Result<Option<&'a str>, Oops> {
                Ok(s.get(..1))
            }

            #[$($attr)*]
            pub async fn async_plain(x: u32) -> Result<Option<u32>, Oops> {
                tokio::task::yield_now().await;
                Ok(Some(x))
            }

            #[$($attr)*]
            pub async fn async_question(s: &str) -> Result<Option<u32>, Oops> {
                tokio::task::yield_now().await;
                let n: u32 = s.parse().map_err(|_| Oops)?;
                Ok(Some(n))
            }

            #[$($attr)*]
            pub async fn async_early(x: u32) -> Result<Option<u32>, Oops> {
                if x == 0 {
                    return Ok(None);
                }
                tokio::task::yield_now().await;
                Ok(Some(x))
            }

            #[$($attr)*]
            pub async fn async_generic<T: Send + Into<u32>>(x: T) -> Result<Option<u32>, Oops> {
                Ok(Some(x.into()))
            }

            #[$($attr)*]
            pub async fn async_impl(x: impl Into<u32> + Send) -> Result<Option<impl Display>, Oops> {
                Ok(Some(x.into()))
            }

            pub struct Svc(pub u32);

            impl Svc {
                #[$($attr)*]
                pub fn by_ref(&self) -> Result<Option<u32>, Oops> {
                    Ok(Some(self.0))
                }

                #[$($attr)*]
                pub fn by_mut(&mut self) -> Result<Option<&mut u32>, Oops> {
                    self.0 += 1;
                    Ok(Some(&mut self.0))
                }

                #[$($attr)*]
                pub fn by_value(self) -> Result<Option<u32>, Oops> {
                    Ok(Some(self.0))
                }

                #[$($attr)*]
                pub fn by_box(self: Box<Self>) -> Result<Option<u32>, Oops> {
                    Ok(Some(self.0))
                }

                #[$($attr)*]
                pub async fn async_by_ref(&self) -> Result<Option<u32>, Oops> {
                    Ok(Some(self.0))
                }

                #[$($attr)*]
                pub async fn async_by_mut(&mut self) -> Result<Option<u32>, Oops> {
                    self.0 += 1;
                    Ok(Some(self.0))
                }
            }

            pub trait Sync_ {
                fn get(&self) -> Result<Option<u32>, Oops>;
            }

            impl Sync_ for Svc {
                #[$($attr)*]
                fn get(&self) -> Result<Option<u32>, Oops> {
                    Ok(Some(self.0))
                }
            }

            #[allow(async_fn_in_trait)]
            pub trait Native {
                async fn fetch(&self) -> Result<Option<u32>, Oops>;
            }

            impl Native for Svc {
                #[$($attr)*]
                async fn fetch(&self) -> Result<Option<u32>, Oops> {
                    tokio::task::yield_now().await;
                    Ok(Some(self.0))
                }
            }

            #[async_trait]
            pub trait Boxed {
                async fn load(&self, fail: bool) -> Result<Option<u32>, Oops>;
            }

            #[async_trait]
            impl Boxed for Svc {
                #[$($attr)*]
                async fn load(&self, fail: bool) -> Result<Option<u32>, Oops> {
                    if fail {
                        return Err(Oops);
                    }
                    tokio::task::yield_now().await;
                    Ok(Some(self.0))
                }
            }

            /// Calls every shape once; returns the number of calls.
            pub async fn run() -> u64 {
                assert_eq!(sync_plain(1).unwrap(), Some(1));
                assert!(sync_question("x").is_err());
                assert_eq!(sync_early(0).unwrap(), None);
                assert_eq!(generic([7u8]).unwrap(), Some(7));
                assert_eq!(impl_arg(3u8).unwrap(), Some(3));
                assert_eq!(impl_ret(4).unwrap().map(|d| d.to_string()), Some("4".into()));
                assert_eq!(borrow("ab").unwrap(), Some("a"));
                assert_eq!(async_plain(1).await.unwrap(), Some(1));
                assert_eq!(async_question("5").await.unwrap(), Some(5));
                assert_eq!(async_early(0).await.unwrap(), None);
                assert_eq!(async_generic(2u8).await.unwrap(), Some(2));
                assert_eq!(async_impl(6u8).await.unwrap().map(|d| d.to_string()), Some("6".into()));
                let mut s = Svc(10);
                assert_eq!(s.by_ref().unwrap(), Some(10));
                assert_eq!(s.by_mut().unwrap().copied(), Some(11));
                assert_eq!(s.async_by_ref().await.unwrap(), Some(11));
                assert_eq!(s.async_by_mut().await.unwrap(), Some(12));
                assert_eq!(Sync_::get(&s).unwrap(), Some(12));
                assert_eq!(s.fetch().await.unwrap(), Some(12));
                let boxed: &(dyn Boxed + Send + Sync) = &s;
                assert!(boxed.load(true).await.is_err());
                assert_eq!(boxed.load(false).await.unwrap(), Some(12));
                assert_eq!(Box::new(Svc(20)).by_box().unwrap(), Some(20));
                assert_eq!(s.by_value().unwrap(), Some(12));
                22
            }
        }
    };
}

shapes!(api, perfmon_runtime::track_api(path = "/matrix"));
shapes!(query, perfmon_runtime::track_query(table = "Matrix", kind = "write", op = "every-shape"));
shapes!(batch, perfmon_runtime::track_batch("matrix-batch"));
shapes!(cache, perfmon_runtime::track_cache(key = "matrix"));
shapes!(measure, perfmon_runtime::measure("matrix-fn", threshold = "1s"));

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = api::run().await;
    assert_eq!(query::run().await, n);
    assert_eq!(batch::run().await, n);
    assert_eq!(cache::run().await, n);
    assert_eq!(measure::run().await, n);

    let c = collector();
    let api = c.api_stats_for("/matrix");
    assert_eq!(api.total_requests, n);
    assert_eq!(api.status_codes.get(&500), Some(&2), "the two Err returns: {api:?}");
    let q = &c.database_stats().tables["Matrix"].operations["every-shape"];
    assert_eq!((q.writes, q.errors), (n, 2));
    let b = &c.batch_stats().batches["matrix-batch"];
    assert_eq!((b.runs, b.failures), (n, 2));
    let k = &c.cache_stats().keys["matrix"];
    assert_eq!((k.total_operations, k.errors, k.misses), (n, 2, 2));
    assert_eq!(c.function_stats().functions["matrix-fn"].calls, n);
}
