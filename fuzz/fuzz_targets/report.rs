//! Any bytes as each fixed-size structure (REPORT, REPORT body, TARGETINFO, attestation key id,
//! qe_report_info, quote header, TD report): parsing answers without panicking and whatever is
//! accepted encodes back to the same bytes.
#![no_main]

use ccm_sgx::{
    AttKeyId, QeReportInfo, QuoteHeader, Report, ReportBody, TargetInfo, TdReport10,
};
use libfuzzer_sys::fuzz_target;

macro_rules! check {
    ($data:expr, $($ty:ty),*) => {$(
        if let Ok(v) = <$ty>::parse($data) {
            assert_eq!(v.as_bytes(), $data);
            assert_eq!(<$ty>::parse(&v.to_bytes()).expect("re-parse"), v);
        }
    )*};
}

fuzz_target!(|data: &[u8]| {
    check!(data, Report, ReportBody, TargetInfo, AttKeyId, QeReportInfo, QuoteHeader, TdReport10);
    // Also every structure on a prefix of exactly its size, so the fuzzer reaches the Ok paths.
    for size in [48, 256, 384, 432, 512, 584, 960] {
        if let Some(prefix) = data.get(..size) {
            check!(prefix, Report, ReportBody, TargetInfo, AttKeyId, QeReportInfo, QuoteHeader, TdReport10);
        }
    }
    if let Ok(r) = Report::parse(data) {
        let _ = r.body.attributes.flags();
        let _ = TargetInfo::for_enclave(&r.body);
    }
});
