//! Any bytes as a DCAP quote: the parser answers without panicking; whatever it accepts encodes
//! back to exactly the bytes it read (zero padding aside), and the PCK chain and extension
//! parsers answer too.
#![no_main]

use ccm_sgx::{Quote, SgxExtension};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(quote) = Quote::parse(data) else {
        return;
    };
    let encoded = quote.to_bytes().expect("an accepted quote encodes");
    assert!(data.starts_with(&encoded), "encoding differs from the input");
    assert!(data[encoded.len()..].iter().all(|b| *b == 0), "only zero padding is tolerated");
    assert_eq!(Quote::parse(&encoded).expect("the encoding parses"), quote);
    assert_eq!(quote.signed_bytes(), &data[..quote.signed_len()]);
    let _ = quote.signature_data.qe_report_data_matches();
    if let Ok(chain) = quote.pck_cert_chain() {
        for cert in &chain {
            let _ = SgxExtension::from_certificate_der(cert);
        }
    }
});
