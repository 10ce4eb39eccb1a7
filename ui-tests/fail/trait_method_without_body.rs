use perfmon_runtime::measure;

trait Calc {
    #[measure("calc")]
    fn calc(&self) -> u32;
}

fn main() {}
