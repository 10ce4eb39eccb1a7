//! Quiet logs under trouble (issue 12, item 5): a slow threshold crossed by every call — a
//! database gone slow — gives one warning per series per interval, each saying how many slow
//! calls it stands for; the slow counters still count every one. Its own test binary: the
//! interval is process-wide.

use std::time::{Duration, SystemTime};

use perfmon_runtime::*;
use perfmon_tests::{spin, LogBuffer};

#[track_query(table = "QuietStaff", kind = "read", op = "findMany", slow = "1us")]
fn slow_query() -> usize {
    spin(Duration::from_micros(3));
    1
}

fn slow_hand_recorded_query() {
    record_database_metric(DatabaseMetric {
        operation: "update",
        table: "QuietShifts",
        duration: Duration::from_secs(2), // over the 100 ms default
        timestamp: SystemTime::now(),
        query_type: QueryType::Write,
    });
}

#[test]
fn every_call_slow_gives_one_warning_per_series_per_interval() {
    // long enough that the first 2,000 calls (milliseconds of work) fit in it on a loaded
    // machine; the test then waits it out once
    let interval = Duration::from_secs(3);
    let _perf = init_blocking(
        Config::builder()
            .slow_log_interval(interval)
            .no_alerts()
            .build(),
    )
    .expect("init");
    let out = LogBuffer::default();
    let subscriber = out.subscriber(tracing_subscriber::filter::LevelFilter::INFO);
    let lines = |table: &str| -> Vec<String> {
        out.text()
            .lines()
            .filter(|l| l.contains(table))
            .map(str::to_string)
            .collect()
    };
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..1_000 {
            slow_query();
            slow_hand_recorded_query();
        }
        assert_eq!(lines("QuietStaff").len(), 1, "{:?}", lines("QuietStaff"));
        assert_eq!(lines("QuietShifts").len(), 1, "{:?}", lines("QuietShifts"));
        assert!(lines("QuietStaff")[0].contains("slow query"));
        assert!(!lines("QuietStaff")[0].contains("more since"));

        // once the interval has passed, the next one is logged, with what it stands for
        std::thread::sleep(interval + Duration::from_millis(50));
        slow_query();
        slow_hand_recorded_query();
        for table in ["QuietStaff", "QuietShifts"] {
            let l = lines(table);
            assert_eq!(l.len(), 2, "{l:?}");
            assert!(
                l[1].contains("(and 999 more since the last warning)")
                    && l[1].contains("suppressed=999"),
                "{}",
                l[1]
            );
        }
    });
    // the counters miss none of them
    let db = collector().database_stats();
    assert_eq!(db.tables["QuietStaff"].totals.slow_queries, 1_001);
}
