//! MRENCLAVE: the SHA-256 the CPU accumulates while an enclave is built (SDM vol. 3D, 39.1), and
//! the SGXS stream format, which is exactly the sequence of 64-byte records (plus EEXTEND data)
//! that is hashed — so SHA-256 of an SGXS file is its MRENCLAVE.
//!
//! ```text
//! ECREATE  "ECREATE\0" ‖ SSAFRAMESIZE u32 (pages) ‖ SIZE u64 ‖ 44 zero bytes
//! EADD     "EADD\0\0\0\0" ‖ offset u64 ‖ SECINFO.FLAGS u64 ‖ 40 zero bytes
//! EEXTEND  "EEXTEND\0" ‖ offset u64 ‖ 48 zero bytes, then the 256 measured bytes
//! ```
//!
//! The builder enforces the canonical order the `sgxs` crate also enforces: one ECREATE first;
//! pages added at strictly increasing, page-aligned offsets below SIZE; a page's EEXTENDs follow
//! its EADD, each a distinct 256-byte chunk of that page. The same rules validate SGXS input.

use ring::digest;

use crate::Error;
use crate::error::MeasureError;
use crate::types::Measurement;

/// Size of an enclave page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of the data measured by one EEXTEND.
pub const CHUNK_SIZE: usize = 256;
const CHUNKS_PER_PAGE: u64 = 16;

const TAG_ECREATE: [u8; 8] = *b"ECREATE\0";
const TAG_EADD: [u8; 8] = *b"EADD\0\0\0\0";
const TAG_EEXTEND: [u8; 8] = *b"EEXTEND\0";
/// Fortanix SGXS extension: the enclave size is not yet known.
const TAG_UNSIZED: [u8; 8] = *b"UNSIZED\0";
/// Fortanix SGXS extension: 256 bytes to load but not measure.
const TAG_UNMEASURED: [u8; 8] = *b"UNMEASRD";

bitflags::bitflags! {
    /// Permission and state bits of SECINFO.FLAGS (bits 0..8). Unknown bits are kept.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct SecInfoFlags: u8 {
        /// Readable.
        const R = 0x01;
        /// Writable.
        const W = 0x02;
        /// Executable.
        const X = 0x04;
        const _ = !0;
    }
}

/// The page type of SECINFO.FLAGS (bits 8..16). Unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageType(pub u8);

impl PageType {
    /// A thread control structure.
    pub const TCS: Self = Self(1);
    /// A regular page.
    pub const REG: Self = Self(2);
}

/// The measured part of SECINFO: permissions and page type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SecInfo {
    /// R, W, X.
    pub flags: SecInfoFlags,
    /// REG or TCS.
    pub page_type: PageType,
}

impl SecInfo {
    /// A regular page with these permissions.
    pub const fn reg(flags: SecInfoFlags) -> Self {
        Self {
            flags,
            page_type: PageType::REG,
        }
    }

    /// A TCS page (no permissions, as the hardware requires).
    pub const fn tcs() -> Self {
        Self {
            flags: SecInfoFlags::empty(),
            page_type: PageType::TCS,
        }
    }

    /// SECINFO.FLAGS as measured: permissions | page type << 8.
    pub fn to_u64(self) -> u64 {
        u64::from(self.flags.bits()) | (u64::from(self.page_type.0) << 8)
    }

    /// Splits SECINFO.FLAGS; bits above 16 are refused (they are not measurable page state).
    pub fn from_u64(v: u64) -> Option<Self> {
        if v >> 16 != 0 {
            return None;
        }
        let [flags, page_type, ..] = v.to_le_bytes();
        Some(Self {
            flags: SecInfoFlags::from_bits_retain(flags),
            page_type: PageType(page_type),
        })
    }
}

/// Builds MRENCLAVE step by step, optionally recording the SGXS stream at the same time.
#[derive(Clone)]
pub struct MrEnclaveBuilder {
    hasher: digest::Context,
    size: u64,
    ssa_frame_size: u32,
    /// Offset of the last EADDed page and a bitmap of the chunks of it already seen.
    last_page: Option<(u64, u16)>,
    pages: u64,
    measured_chunks: u64,
    sgxs: Option<Vec<u8>>,
}

impl core::fmt::Debug for MrEnclaveBuilder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MrEnclaveBuilder")
            .field("ssa_frame_size", &self.ssa_frame_size)
            .field("size", &format_args!("{:#x}", self.size))
            .field("pages", &self.pages)
            .field("measured_chunks", &self.measured_chunks)
            .field("records_sgxs", &self.sgxs.is_some())
            .finish_non_exhaustive()
    }
}

/// The result of a finished measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measured {
    /// MRENCLAVE.
    pub mrenclave: Measurement,
    /// SSAFRAMESIZE (pages) given to ECREATE.
    pub ssa_frame_size: u32,
    /// SIZE given to ECREATE.
    pub size: u64,
    /// Number of pages added.
    pub pages: u64,
    /// Number of 256-byte chunks measured.
    pub measured_chunks: u64,
    /// The SGXS stream, when the builder was created with [`MrEnclaveBuilder::with_sgxs`].
    pub sgxs: Option<Vec<u8>>,
}

impl MrEnclaveBuilder {
    /// Starts a measurement with ECREATE. SIZE must be a power of two of at least two pages
    /// and SSAFRAMESIZE at least one page, as ECREATE requires.
    pub fn new(ssa_frame_size: u32, size: u64) -> Result<Self, Error> {
        Self::start(ssa_frame_size, size, None)
    }

    /// Like [`MrEnclaveBuilder::new`], and also records the SGXS stream (returned by
    /// [`MrEnclaveBuilder::finish`]).
    pub fn with_sgxs(ssa_frame_size: u32, size: u64) -> Result<Self, Error> {
        Self::start(ssa_frame_size, size, Some(Vec::new()))
    }

    fn start(ssa_frame_size: u32, size: u64, sgxs: Option<Vec<u8>>) -> Result<Self, Error> {
        if size < 2 * PAGE_SIZE || !size.is_power_of_two() {
            return Err(MeasureError::BadSize(size).into());
        }
        if ssa_frame_size == 0 {
            return Err(MeasureError::ZeroSsaFrameSize.into());
        }
        let mut builder = Self {
            hasher: digest::Context::new(&digest::SHA256),
            size,
            ssa_frame_size,
            last_page: None,
            pages: 0,
            measured_chunks: 0,
            sgxs,
        };
        let mut record = [0u8; 64];
        put(&mut record, 0, &TAG_ECREATE);
        put(&mut record, 8, &ssa_frame_size.to_le_bytes());
        put(&mut record, 12, &size.to_le_bytes());
        builder.emit(&record);
        Ok(builder)
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        if let Some(s) = self.sgxs.as_mut() {
            s.extend_from_slice(bytes);
        }
    }

    fn check_page(&self, offset: u64, secinfo: SecInfo) -> Result<(), MeasureError> {
        if !offset.is_multiple_of(PAGE_SIZE) || offset >= self.size {
            return Err(MeasureError::BadPageOffset {
                offset,
                size: self.size,
            });
        }
        if let Some((previous, _)) = self.last_page
            && offset <= previous
        {
            return Err(MeasureError::PageOrder { offset, previous });
        }
        if secinfo.page_type == PageType::TCS
            && secinfo
                .flags
                .intersects(SecInfoFlags::R | SecInfoFlags::W | SecInfoFlags::X)
        {
            return Err(MeasureError::TcsPermissions { offset });
        }
        Ok(())
    }

    /// EADD: adds the page at `offset` (relative to the enclave base) with `secinfo`.
    pub fn eadd(&mut self, offset: u64, secinfo: SecInfo) -> Result<(), Error> {
        self.check_page(offset, secinfo)?;
        let mut record = [0u8; 64];
        put(&mut record, 0, &TAG_EADD);
        put(&mut record, 8, &offset.to_le_bytes());
        put(&mut record, 16, &secinfo.to_u64().to_le_bytes());
        self.emit(&record);
        self.last_page = Some((offset, 0));
        self.pages = self.pages.saturating_add(1);
        Ok(())
    }

    /// Marks the chunk at `offset` as seen, checking that it is a new chunk of the last page.
    fn claim_chunk(&mut self, offset: u64) -> Result<(), MeasureError> {
        let bad = MeasureError::BadChunkOffset { offset };
        let Some((page, seen)) = self.last_page.as_mut() else {
            return Err(bad);
        };
        let index = offset
            .checked_sub(*page)
            .filter(|d| d.is_multiple_of(CHUNK_SIZE as u64))
            .and_then(|d| d.checked_div(CHUNK_SIZE as u64))
            .filter(|i| *i < CHUNKS_PER_PAGE)
            .ok_or(bad)?;
        let bit = 1u16 << index;
        if *seen & bit != 0 {
            return Err(MeasureError::BadChunkOffset { offset });
        }
        *seen |= bit;
        Ok(())
    }

    /// EEXTEND: measures the 256 bytes at `offset`, which must be a chunk of the page added
    /// last that has not been measured yet.
    pub fn eextend(&mut self, offset: u64, chunk: &[u8; CHUNK_SIZE]) -> Result<(), Error> {
        self.claim_chunk(offset)?;
        let mut record = [0u8; 64];
        put(&mut record, 0, &TAG_EEXTEND);
        put(&mut record, 8, &offset.to_le_bytes());
        self.emit(&record);
        self.emit(chunk);
        self.measured_chunks = self.measured_chunks.saturating_add(1);
        Ok(())
    }

    /// Adds a 4 KiB page: EADD, then (if `measured`) EEXTEND of its 16 chunks. An unmeasured
    /// page contributes only its EADD record; its content is not part of MRENCLAVE.
    pub fn add_page(
        &mut self,
        offset: u64,
        secinfo: SecInfo,
        data: &[u8; PAGE_SIZE as usize],
        measured: bool,
    ) -> Result<(), Error> {
        self.eadd(offset, secinfo)?;
        if measured {
            let mut chunk_offset = offset;
            for chunk in data.chunks_exact(CHUNK_SIZE) {
                let chunk: &[u8; CHUNK_SIZE] =
                    chunk.try_into().map_err(|_| MeasureError::BadChunkOffset {
                        offset: chunk_offset,
                    })?;
                self.eextend(chunk_offset, chunk)?;
                chunk_offset = chunk_offset.saturating_add(CHUNK_SIZE as u64);
            }
        }
        Ok(())
    }

    /// Finishes the measurement (EINIT would now freeze MRENCLAVE).
    pub fn finish(self) -> Measured {
        Measured {
            mrenclave: Measurement(sha256_array(self.hasher.finish())),
            ssa_frame_size: self.ssa_frame_size,
            size: self.size,
            pages: self.pages,
            measured_chunks: self.measured_chunks,
            sgxs: self.sgxs,
        }
    }
}

/// The 32 bytes of a SHA-256 digest.
fn sha256_array(d: digest::Digest) -> [u8; 32] {
    let mut out = [0u8; 32];
    if d.as_ref().len() == out.len() {
        out.copy_from_slice(d.as_ref());
    }
    out
}

/// Copies `src` into `dst` at `at` (sizes are fixed by the callers above).
fn put(dst: &mut [u8; 64], at: usize, src: &[u8]) {
    if let Some(slot) = at
        .checked_add(src.len())
        .and_then(|end| dst.get_mut(at..end))
    {
        slot.copy_from_slice(src);
    }
}

/// Reads an SGXS stream, checks that it is canonical (the rules of [`MrEnclaveBuilder`]; record
/// reserved bytes zero; no trailing partial record) and recomputes MRENCLAVE.
///
/// Besides the measured records, the Fortanix `UNMEASRD` record (256 bytes loaded but not
/// measured) is accepted and excluded from the hash; an `UNSIZED` stream is refused, as it has
/// no MRENCLAVE yet. For a stream without `UNMEASRD` records the result equals SHA-256 of the
/// stream.
pub fn measure_sgxs(stream: &[u8]) -> Result<Measured, Error> {
    let mut r = crate::reader::Reader::new(stream);
    let mut builder: Option<MrEnclaveBuilder> = None;
    let mut index = 0usize;
    while r.remaining() > 0 {
        let sgxs_err = |reason| Error::from(MeasureError::Sgxs { index, reason });
        let header: [u8; 64] = r.array("sgxs.record")?;
        let (tag, rest) = header.split_at(8);
        let tag: [u8; 8] = tag.try_into().map_err(|_| sgxs_err("short tag"))?;
        let field_u64 = |at: usize| -> u64 {
            rest.get(at..at.saturating_add(8))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes)
        };
        let zero_from = |at: usize| rest.get(at..).is_some_and(|b| b.iter().all(|x| *x == 0));
        match (tag, builder.as_mut()) {
            (TAG_ECREATE, None) => {
                let ssa = rest
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map_or(0, u32::from_le_bytes);
                let size = field_u64(4);
                if !zero_from(12) {
                    return Err(sgxs_err("non-zero reserved bytes in ECREATE"));
                }
                builder = Some(MrEnclaveBuilder::new(ssa, size)?);
            }
            (TAG_UNSIZED, None) => return Err(MeasureError::Unsized.into()),
            (TAG_ECREATE | TAG_UNSIZED, Some(_)) => {
                return Err(sgxs_err("second ECREATE"));
            }
            (TAG_EADD | TAG_EEXTEND | TAG_UNMEASURED, None) => {
                return Err(sgxs_err("stream does not start with ECREATE"));
            }
            (TAG_EADD, Some(b)) => {
                if !zero_from(16) {
                    return Err(sgxs_err("non-zero reserved bytes in EADD"));
                }
                let secinfo = SecInfo::from_u64(field_u64(8))
                    .ok_or_else(|| sgxs_err("SECINFO flags above bit 15 set"))?;
                b.eadd(field_u64(0), secinfo)?;
            }
            (TAG_EEXTEND, Some(b)) => {
                if !zero_from(8) {
                    return Err(sgxs_err("non-zero reserved bytes in EEXTEND"));
                }
                let data: [u8; CHUNK_SIZE] = r.array("sgxs.eextend_data")?;
                b.eextend(field_u64(0), &data)?;
            }
            (TAG_UNMEASURED, Some(b)) => {
                if !zero_from(8) {
                    return Err(sgxs_err("non-zero reserved bytes in UNMEASRD"));
                }
                r.take(CHUNK_SIZE, "sgxs.unmeasured_data")?;
                b.claim_chunk(field_u64(0))?;
            }
            (other, _) => {
                return Err(MeasureError::UnknownTag {
                    index,
                    tag: u64::from_le_bytes(other),
                }
                .into());
            }
        }
        index = index.saturating_add(1);
    }
    builder.map(MrEnclaveBuilder::finish).ok_or_else(|| {
        MeasureError::Sgxs {
            index: 0,
            reason: "empty stream",
        }
        .into()
    })
}
