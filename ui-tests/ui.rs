//! Every macro on every fn shape compiles and records (`pass/`), and every mistake in an
//! attribute is a compile error on its token that lists what is accepted (`fail/`). With the
//! feature `off`, every shape compiles to the unchanged fn and records nothing (`off/`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    if cfg!(feature = "off") {
        // `--features off` (`.ci/test` runs this suite once more so): every shape compiles to
        // the unchanged fn and records nothing
        t.pass("off/*.rs");
    } else {
        t.pass("pass/*.rs");
        t.compile_fail("fail/*.rs");
    }
}
