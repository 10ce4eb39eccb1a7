//! The clinic scheduler itself: staff queries, schedule assignments, fairness statistics behind a
//! cache, leave applications, logins and the weekly assignment batch, over an in-memory data
//! layer with realistic latencies. This is the instrumented code: all five perfmon macros and
//! `record_business_metric` are used here, and nowhere else in the example.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use perfmon_runtime::{
    measure, record_business_metric, track_api, track_batch, track_cache, track_query, HttpStatus,
};
use tokio::time::sleep;

use crate::rng::Rng;

/// Errors of the service, each with its HTTP status.
#[derive(Debug)]
pub(crate) enum ApiError {
    Validation(&'static str),
    Conflict(&'static str),
    Database(&'static str),
}

impl HttpStatus for ApiError {
    fn http_status(&self) -> u16 {
        match self {
            ApiError::Validation(_) => 422,
            ApiError::Conflict(_) => 409,
            ApiError::Database(_) => 500,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Validation(m) | ApiError::Conflict(m) | ApiError::Database(m) => {
                f.write_str(m)
            }
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Staff {
    pub(crate) id: u32,
    pub(crate) clinic: u32,
    pub(crate) shifts: u32,
}

/// The data layer: an in-memory table standing in for PostgreSQL, with realistic latencies.
struct Db {
    staff: Mutex<Vec<Staff>>,
    rng: Mutex<Rng>,
    /// While set, every query fails: the `--alert-demo` outage.
    outage: AtomicBool,
}

impl Db {
    fn latency(&self, lo: u64, hi: u64) -> Duration {
        self.rng
            .lock()
            .map(|mut r| r.millis(lo, hi))
            .unwrap_or(Duration::from_millis(lo))
    }

    fn check_outage(&self) -> Result<(), ApiError> {
        if self.outage.load(Ordering::Relaxed) {
            Err(ApiError::Database("connection refused"))
        } else {
            Ok(())
        }
    }

    fn staff_table(&self) -> Result<MutexGuard<'_, Vec<Staff>>, ApiError> {
        self.staff
            .lock()
            .map_err(|_| ApiError::Database("staff table poisoned"))
    }

    #[track_query(table = "Staff", kind = "read", op = "findMany")]
    async fn find_staff(&self, clinic: u32) -> Result<Vec<Staff>, ApiError> {
        sleep(self.latency(2, 12)).await;
        self.check_outage()?;
        let staff = self.staff_table()?;
        Ok(staff
            .iter()
            .filter(|s| s.clinic == clinic)
            .cloned()
            .collect())
    }

    #[track_query(table = "Schedule", kind = "write", op = "createMany")]
    async fn save_assignments(&self, ids: &[u32], week: u32) -> Result<usize, ApiError> {
        // week 40 hits a lock timeout, and two weeks' writes are slow (over 100 ms)
        let slow = week % 25 == 0;
        sleep(if slow {
            self.latency(110, 180)
        } else {
            self.latency(5, 25)
        })
        .await;
        if week % 40 == 0 {
            return Err(ApiError::Database("lock timeout on Schedule"));
        }
        let mut staff = self.staff_table()?;
        for s in staff.iter_mut().filter(|s| ids.contains(&s.id)) {
            s.shifts += 1;
        }
        Ok(ids.len())
    }

    #[track_query(table = "LeaveRequest", kind = "write", op = "create")]
    async fn insert_leave(&self, staff_id: u32) -> Result<u64, ApiError> {
        sleep(self.latency(3, 9)).await;
        self.check_outage()?;
        Ok(u64::from(staff_id) * 1000)
    }
}

/// Fairness statistics behind a cache (Redis in production, a map here).
struct FairnessCache {
    entries: Mutex<HashMap<(u32, u32), f64>>,
}

impl FairnessCache {
    #[track_cache(key = "fairness:stats")]
    fn get(&self, clinic: u32, month: u32) -> Result<Option<f64>, ApiError> {
        if month == 13 {
            return Err(ApiError::Database("cache connection reset"));
        }
        let entries = self
            .entries
            .lock()
            .map_err(|_| ApiError::Database("cache poisoned"))?;
        Ok(entries.get(&(clinic, month)).copied())
    }

    fn put(&self, clinic: u32, month: u32, value: f64) {
        if let Ok(mut e) = self.entries.lock() {
            e.insert((clinic, month), value);
        }
    }
}

/// The scheduler: its data layer and its cache.
pub(crate) struct App {
    db: Db,
    cache: FairnessCache,
}

/// How evenly shifts are spread: 1.0 is perfectly fair.
#[measure("calculate-fairness", threshold = "50ms")]
async fn calculate_fairness(staff: &[Staff], heavy: bool) -> f64 {
    // a heavy month is a slow computation, over the threshold
    sleep(if heavy {
        Duration::from_millis(60)
    } else {
        Duration::from_millis(4)
    })
    .await;
    if staff.is_empty() {
        return 1.0;
    }
    let mean = staff.iter().map(|s| f64::from(s.shifts)).sum::<f64>() / staff.len() as f64;
    let var = staff
        .iter()
        .map(|s| (f64::from(s.shifts) - mean).powi(2))
        .sum::<f64>()
        / staff.len() as f64;
    1.0 / (1.0 + var.sqrt())
}

/// One business event of `clinic`, with one more tag.
fn business_event(name: &str, clinic: u32, tag: (&str, &str)) {
    let clinic = format!("c{clinic}");
    record_business_metric(name, 1.0, &[("clinicId", &clinic), tag]);
}

impl App {
    /// A scheduler over `staff`, its latencies drawn from `seed`, with an empty cache.
    pub(crate) fn new(staff: Vec<Staff>, seed: u64) -> App {
        App {
            db: Db {
                staff: Mutex::new(staff),
                rng: Mutex::new(Rng::new(seed)),
                outage: AtomicBool::new(false),
            },
            cache: FairnessCache {
                entries: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Takes the database away (every query fails) or brings it back.
    pub(crate) fn set_outage(&self, down: bool) {
        self.db.outage.store(down, Ordering::Relaxed);
    }

    #[track_api(method = "GET", path = "/api/staff")]
    pub(crate) async fn list_staff(&self, clinic: u32) -> Result<Vec<Staff>, ApiError> {
        if clinic == 0 {
            return Err(ApiError::Validation("clinicId is required"));
        }
        self.db.find_staff(clinic).await
    }

    #[track_api(
        method = "POST",
        path = "/api/schedule/assign",
        slow = "3s",
        apdex = "1s"
    )]
    pub(crate) async fn assign(
        &self,
        clinic: u32,
        week: u32,
        rebuild: bool,
    ) -> Result<usize, ApiError> {
        let staff = self.db.find_staff(clinic).await?;
        if staff.len() < 2 {
            return Err(ApiError::Conflict("not enough staff for a week"));
        }
        if rebuild {
            // a full rebuild of the month: the slow path the SLA table worries about
            sleep(Duration::from_millis(3100)).await;
        }
        let ids: Vec<u32> = staff.iter().take(3).map(|s| s.id).collect();
        self.db.save_assignments(&ids, week).await
    }

    #[track_api(method = "GET", path = "/api/stats/fairness", slow = "1s")]
    pub(crate) async fn fairness(&self, clinic: u32, month: u32) -> Result<f64, ApiError> {
        if let Some(v) = self.cache.get(clinic, month)? {
            return Ok(v);
        }
        let staff = self.db.find_staff(clinic).await?;
        let v = calculate_fairness(&staff, month == 12).await;
        self.cache.put(clinic, month, v);
        Ok(v)
    }

    #[track_api(method = "POST", path = "/api/leave")]
    pub(crate) async fn apply_leave(
        &self,
        clinic: u32,
        staff_id: u32,
        annual: bool,
    ) -> Result<u64, ApiError> {
        if staff_id == 0 {
            return Err(ApiError::Validation("staffId is required"));
        }
        let id = self.db.insert_leave(staff_id).await?;
        business_event(
            "leave-application",
            clinic,
            ("type", if annual { "ANNUAL" } else { "SICK" }),
        );
        Ok(id)
    }

    #[track_api(method = "POST", path = "/api/auth/login")]
    pub(crate) fn login(&self, clinic: u32, admin: bool) -> Result<(), ApiError> {
        business_event(
            "user-login",
            clinic,
            ("role", if admin { "ADMIN" } else { "STAFF" }),
        );
        Ok(())
    }
}

/// The weekly assignment batch: fails when a week cannot be saved.
#[track_batch("weekly-assignment")]
pub(crate) async fn weekly_assignment(app: &App, week: u32) -> Result<usize, ApiError> {
    let mut total = 0;
    for clinic in 1..=3 {
        total += app.assign(clinic, week, false).await?;
    }
    Ok(total)
}
