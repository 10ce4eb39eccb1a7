//! Holds nothing: the trybuild cases live in `pass/` and `fail/`.
