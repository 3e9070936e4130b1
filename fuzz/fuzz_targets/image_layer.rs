//! Any bytes as an image layer (uncompressed tar) and as a registry manifest: the layer scanner
//! and the file-tree model (whiteouts, links, symlink resolution, escape checks) and the
//! manifest/index parser must answer without panicking.
#![no_main]

use ccm_image::oci::{Compression, parse_manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(scan) = ccm_image::layer::scan_layer(data, Compression::None, true) {
        let mut tree = ccm_image::FileTree::new();
        // Apply the layer twice, as two layers, so whiteouts meet lower-layer entries.
        for _ in 0..2 {
            if tree.apply_layer(&scan.entries).is_err() {
                break;
            }
        }
        for (path, _) in tree.iter() {
            assert!(
                !path.split('/').any(|c| c == ".." || c.is_empty()),
                "canonical paths only: {path:?}"
            );
        }
    }
    let _ = parse_manifest("fuzz", data, None);
});
