//! Every macro on every fn shape compiles and records (`pass/`), and every mistake in an
//! attribute is a compile error on its token that lists what is accepted (`fail/`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
