//! End-to-end test harness for Wardgate: starts the real binaries and
//! libraries together on 127.0.0.1 in temporary directories.
