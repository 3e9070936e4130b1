//! The synthesized enclave layout and its measurement (MRENCLAVE).
//!
//! Layout version 1, all offsets relative to the enclave base, every region page-aligned:
//!
//! ```text
//! 0                      manifest region: "CCMENCL1" ‖ manifest length u64 LE ‖ manifest bytes,
//!                        zero-padded to a page; R; EADD + EEXTEND (measured)
//! M                      thread 0: TCS page (TCS; measured), SSA frames (2 × 1 page; RW;
//!                        measured), stack pages (RW; EADD only)
//! M + T                  thread 1 ... (T = pages per thread × 4096)
//! M + threads × T        heap: RW pages up to mem_size, EADD only
//! mem_size .. SIZE       not added (ELRANGE padding up to the power of two)
//! ```
//!
//! ECREATE gets SSAFRAMESIZE = 1 and SIZE = the next power of two ≥ mem_size. A TCS holds
//! OSSA = its first SSA page, NSSA = 2, OENTRY = 0, OFSBASE = OGSBASE = the top of its stack and
//! FSLIMIT = GSLIMIT = 0xFFF; every other byte is zero. Everything is a function of the manifest
//! bytes alone, so MRENCLAVE is the same on every machine.
//!
//! The trusted files are loaded into enclave memory at run time, so the heap must hold them:
//! a manifest whose measured pages, thread pages and page-rounded file bytes exceed `mem_size` is
//! refused ([`Error::DoesNotFit`]).

use ccm_sgx::{Measurement, MrEnclaveBuilder, SecInfo, SecInfoFlags};

use crate::error::Error;
use crate::manifest::{EnclaveParams, Manifest, round_up_page};

/// Size of an enclave page.
pub const PAGE_SIZE: u64 = 4096;
/// SSAFRAMESIZE in pages.
pub const SSA_FRAME_PAGES: u32 = 1;
/// SSA frames per thread (NSSA).
pub const SSA_FRAMES: u32 = 2;
/// Magic at the start of the manifest region.
pub const MANIFEST_MAGIC: [u8; 8] = *b"CCMENCL1";
/// Bytes of the manifest region header (magic + length).
pub const MANIFEST_HEADER_LEN: u64 = 16;

/// Where everything goes in the enclave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// SIZE (ELRANGE), a power of two.
    pub size: u64,
    /// Bytes of enclave memory added (pages up to here are EADDed).
    pub mem_size: u64,
    /// Pages of the manifest region.
    pub manifest_pages: u64,
    /// Threads.
    pub threads: u32,
    /// Stack pages per thread.
    pub stack_pages: u64,
    /// Offset of the first heap page.
    pub heap_offset: u64,
    /// Heap pages.
    pub heap_pages: u64,
    /// Page-rounded bytes of trusted files the heap must hold.
    pub file_bytes: u64,
}

fn overflow(what: &str) -> Error {
    Error::InvalidSetting {
        field: "mem_size",
        reason: format!("{what} overflows"),
    }
}

impl Layout {
    /// Pages per thread: TCS, SSA frames, stack.
    pub fn pages_per_thread(&self) -> u64 {
        1 + u64::from(SSA_FRAMES * SSA_FRAME_PAGES) + self.stack_pages
    }

    /// Plans the layout for a manifest of `manifest_len` bytes, checking that the measured
    /// pages, the thread pages and `file_bytes` fit in `mem_size`.
    pub fn plan(
        manifest_len: usize,
        params: &EnclaveParams,
        file_bytes: u64,
    ) -> Result<Self, Error> {
        let manifest_region =
            round_up_page(MANIFEST_HEADER_LEN.saturating_add(manifest_len as u64));
        let stack_pages = params.stack_size / PAGE_SIZE;
        let per_thread = 1 + u64::from(SSA_FRAMES * SSA_FRAME_PAGES) + stack_pages;
        let thread_bytes = per_thread
            .checked_mul(u64::from(params.threads))
            .and_then(|p| p.checked_mul(PAGE_SIZE))
            .ok_or_else(|| overflow("thread pages"))?;
        let needed = manifest_region
            .checked_add(thread_bytes)
            .and_then(|n| n.checked_add(file_bytes))
            .ok_or_else(|| overflow("enclave size"))?;
        let fixed = manifest_region.saturating_add(thread_bytes);
        if needed > params.mem_size {
            return Err(Error::DoesNotFit {
                needed,
                manifest_bytes: manifest_region,
                thread_bytes,
                threads: params.threads,
                file_bytes,
                mem_size: params.mem_size,
            });
        }
        Ok(Layout {
            size: params.size,
            mem_size: params.mem_size,
            manifest_pages: manifest_region / PAGE_SIZE,
            threads: params.threads,
            stack_pages,
            heap_offset: fixed,
            heap_pages: (params.mem_size - fixed) / PAGE_SIZE,
            file_bytes,
        })
    }

    /// The layout of a parsed manifest whose canonical encoding is `manifest_len` bytes long.
    pub fn for_manifest(manifest: &Manifest, manifest_len: usize) -> Result<Self, Error> {
        Self::plan(manifest_len, &manifest.enclave, manifest.file_pages_bytes())
    }

    /// The TCS page of thread `index`, whose pages start at `base`.
    fn tcs_page(&self, base: u64) -> [u8; PAGE_SIZE as usize] {
        let mut tcs = [0u8; PAGE_SIZE as usize];
        let ossa = base + PAGE_SIZE;
        let stack_top = base + self.pages_per_thread() * PAGE_SIZE;
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(slot) = tcs.get_mut(at..at + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
        };
        put(16, &ossa.to_le_bytes()); // OSSA
        put(28, &SSA_FRAMES.to_le_bytes()); // NSSA
        put(48, &stack_top.to_le_bytes()); // OFSBASE
        put(56, &stack_top.to_le_bytes()); // OGSBASE
        put(64, &0xfffu32.to_le_bytes()); // FSLIMIT
        put(68, &0xfffu32.to_le_bytes()); // GSLIMIT
        tcs
    }

    /// Runs the measurement over `manifest` (the canonical bytes this layout was planned for).
    /// With `sgxs`, the SGXS stream is recorded too (for cross-checks with other tools).
    pub fn measure_with(&self, manifest: &[u8], sgxs: bool) -> Result<ccm_sgx::Measured, Error> {
        let mut b = if sgxs {
            MrEnclaveBuilder::with_sgxs(SSA_FRAME_PAGES, self.size)?
        } else {
            MrEnclaveBuilder::new(SSA_FRAME_PAGES, self.size)?
        };
        // Manifest region.
        let mut region = Vec::with_capacity((self.manifest_pages * PAGE_SIZE) as usize);
        region.extend_from_slice(&MANIFEST_MAGIC);
        region.extend_from_slice(&(manifest.len() as u64).to_le_bytes());
        region.extend_from_slice(manifest);
        region.resize((self.manifest_pages * PAGE_SIZE) as usize, 0);
        let mut offset = 0u64;
        for page in region.chunks_exact(PAGE_SIZE as usize) {
            let page: &[u8; PAGE_SIZE as usize] =
                page.try_into().map_err(|_| overflow("manifest region"))?;
            b.add_page(offset, SecInfo::reg(SecInfoFlags::R), page, true)?;
            offset += PAGE_SIZE;
        }
        // Threads.
        let zero = [0u8; PAGE_SIZE as usize];
        let rw = SecInfo::reg(SecInfoFlags::R | SecInfoFlags::W);
        for _ in 0..self.threads {
            let base = offset;
            b.add_page(base, SecInfo::tcs(), &self.tcs_page(base), true)?;
            offset += PAGE_SIZE;
            for _ in 0..SSA_FRAMES * SSA_FRAME_PAGES {
                b.add_page(offset, rw, &zero, true)?;
                offset += PAGE_SIZE;
            }
            for _ in 0..self.stack_pages {
                b.eadd(offset, rw)?;
                offset += PAGE_SIZE;
            }
        }
        // Heap.
        debug_assert_eq!(offset, self.heap_offset);
        for _ in 0..self.heap_pages {
            b.eadd(offset, rw)?;
            offset += PAGE_SIZE;
        }
        Ok(b.finish())
    }

    /// MRENCLAVE of this layout holding `manifest`.
    pub fn measure(&self, manifest: &[u8]) -> Result<Measurement, Error> {
        Ok(self.measure_with(manifest, false)?.mrenclave)
    }
}

/// Parses canonical manifest bytes, plans the layout (checking that it fits) and measures it.
pub fn mrenclave_of(manifest_bytes: &[u8]) -> Result<(Manifest, Layout, Measurement), Error> {
    let manifest = Manifest::from_canonical_bytes(manifest_bytes)?;
    let layout = Layout::for_manifest(&manifest, manifest_bytes.len())?;
    let mrenclave = layout.measure(manifest_bytes)?;
    Ok((manifest, layout, mrenclave))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::tests::sample;

    #[test]
    fn deterministic_and_sensitive() {
        let m = sample();
        let bytes = m.to_canonical_bytes().unwrap();
        let (_, layout, a) = mrenclave_of(&bytes).unwrap();
        let (_, _, b) = mrenclave_of(&bytes).unwrap();
        assert_eq!(a, b);
        assert_eq!(layout.size, 64 * 1024 * 1024);
        assert_eq!(
            layout.heap_offset + layout.heap_pages * PAGE_SIZE,
            layout.mem_size
        );
        let mut m2 = m.clone();
        m2.enclave = EnclaveParams::new(m.enclave.mem_size, 5, false).unwrap();
        let (_, _, c) = mrenclave_of(&m2.to_canonical_bytes().unwrap()).unwrap();
        assert_ne!(a, c, "thread count is measured");
        let mut m3 = m.clone();
        m3.trusted_files[0].sha256.0[0] ^= 1;
        let (_, _, d) = mrenclave_of(&m3.to_canonical_bytes().unwrap()).unwrap();
        assert_ne!(a, d, "file hashes are measured");
    }

    #[test]
    fn sgxs_stream_is_canonical_and_hashes_to_mrenclave() {
        let bytes = sample().to_canonical_bytes().unwrap();
        let (_, layout, mrenclave) = mrenclave_of(&bytes).unwrap();
        let measured = layout.measure_with(&bytes, true).unwrap();
        assert_eq!(measured.mrenclave, mrenclave);
        let stream = measured.sgxs.unwrap();
        // SHA-256 of an SGXS stream is its MRENCLAVE, and the stream passes the canonical checks.
        assert_eq!(
            ring::digest::digest(&ring::digest::SHA256, &stream).as_ref(),
            &mrenclave.0[..]
        );
        let reread = ccm_sgx::measure_sgxs(&stream).unwrap();
        assert_eq!(reread.mrenclave, mrenclave);
        let expected_pages = layout.manifest_pages
            + u64::from(layout.threads) * layout.pages_per_thread()
            + layout.heap_pages;
        assert_eq!(reread.pages, expected_pages);
        assert_eq!(reread.pages * PAGE_SIZE, layout.mem_size);
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let mut m = sample();
        m.trusted_files[0].size = 200 * 1024 * 1024;
        let bytes = m.to_canonical_bytes().unwrap();
        let err = mrenclave_of(&bytes).unwrap_err();
        assert!(
            matches!(err, Error::DoesNotFit { mem_size, .. } if mem_size == 64 * 1024 * 1024),
            "{err}"
        );
        assert!(err.to_string().contains("does not fit"), "{err}");
        let mut m = sample();
        m.enclave = EnclaveParams::new(16 * PAGE_SIZE, 1, false).unwrap();
        m.trusted_files.clear();
        assert!(matches!(
            mrenclave_of(&m.to_canonical_bytes().unwrap()),
            Err(Error::DoesNotFit { .. })
        ));
    }
}
