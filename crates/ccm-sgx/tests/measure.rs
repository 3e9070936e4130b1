//! MRENCLAVE and SGXS, cross-checked with the `sgxs` crate: it reads our streams and hashes them
//! to our MRENCLAVE, and its writer produces the same bytes for the same layout.

// Helpers outside #[test] functions unwrap too (clippy.toml allows it only inside tests).
#![allow(clippy::unwrap_used)]

use ccm_sgx::{
    Error, MeasureError, Measurement, MrEnclaveBuilder, PageType, SecInfo, SecInfoFlags,
    measure_sgxs,
};
use openssl::hash::Hasher;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sgxs::sgxs::{
    CanonicalSgxsReader, CanonicalSgxsWriter, MeasECreate, PageChunk, PageReader, SecinfoTruncated,
};
use sha2::Digest;

struct Page {
    offset: u64,
    secinfo: SecInfo,
    data: Vec<u8>,
    /// Bit i set: chunk i is measured.
    measured: u16,
}

struct Layout {
    ssa_frame_size: u32,
    size: u64,
    pages: Vec<Page>,
}

fn random_layout(seed: u64) -> Layout {
    let mut rng = StdRng::seed_from_u64(seed);
    let size = 1u64 << rng.gen_range(16..=24);
    let mut pages = Vec::new();
    let mut offset = 0u64;
    while pages.len() < 24 {
        offset += 4096 * rng.gen_range(0..4u64);
        if offset >= size {
            break;
        }
        let tcs = rng.gen_bool(0.2);
        let secinfo = if tcs {
            SecInfo::tcs()
        } else {
            SecInfo::reg(SecInfoFlags::from_bits_retain(rng.gen_range(0..8u8)))
        };
        let measured = match rng.gen_range(0..3) {
            0 => 0xffff,
            1 => 0,
            _ => rng.r#gen::<u16>(),
        };
        let mut data = vec![0u8; 4096];
        rng.fill(&mut data[..]);
        pages.push(Page {
            offset,
            secinfo,
            data,
            measured,
        });
        offset += 4096;
    }
    Layout {
        ssa_frame_size: rng.gen_range(1..4),
        size,
        pages,
    }
}

/// Measures with our builder, recording the SGXS stream and its record boundaries.
fn measure_ours(layout: &Layout) -> (Measurement, Vec<u8>, Vec<usize>) {
    let mut b = MrEnclaveBuilder::with_sgxs(layout.ssa_frame_size, layout.size).unwrap();
    let mut boundaries = vec![64];
    let mut at = 64;
    for page in &layout.pages {
        b.eadd(page.offset, page.secinfo).unwrap();
        at += 64;
        boundaries.push(at);
        for i in 0..16 {
            if page.measured & (1 << i) != 0 {
                let chunk: &[u8; 256] = page.data[i * 256..(i + 1) * 256].try_into().unwrap();
                b.eextend(page.offset + i as u64 * 256, chunk).unwrap();
                at += 64 + 256;
                boundaries.push(at);
            }
        }
    }
    let measured = b.finish();
    (measured.mrenclave, measured.sgxs.unwrap(), boundaries)
}

/// Writes the same layout with the `sgxs` crate's writer. With `unmeasured_as_data`, chunks we
/// do not measure are written as UNMEASRD records (loaded, not measured).
fn write_with_sgxs_crate(layout: &Layout, unmeasured_as_data: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let ecreate = MeasECreate {
        ssaframesize: layout.ssa_frame_size,
        size: layout.size,
    };
    let mut w = CanonicalSgxsWriter::new(&mut out, ecreate, true).unwrap();
    for page in &layout.pages {
        let mut chunks = [PageChunk::Skipped; 16];
        for (i, c) in chunks.iter_mut().enumerate() {
            *c = if page.measured & (1 << i) != 0 {
                PageChunk::IncludedMeasured
            } else if unmeasured_as_data {
                PageChunk::Included
            } else {
                PageChunk::Skipped
            };
        }
        let secinfo = SecinfoTruncated {
            flags: sgx_isa::SecinfoFlags::from_bits_truncate(page.secinfo.to_u64()),
        };
        // The sgxs writer consumes 256 bytes of input per included chunk, skipping none for
        // skipped chunks, so hand it exactly the included chunks.
        let included: Vec<u8> = chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != PageChunk::Skipped)
            .flat_map(|(i, _)| page.data[i * 256..(i + 1) * 256].iter().copied())
            .collect();
        let mut data = &included[..];
        w.write_page((&mut data, chunks), Some(page.offset), secinfo)
            .unwrap();
    }
    out
}

#[test]
fn sgxs_crate_agrees_on_streams_and_mrenclave() {
    for seed in 0..12 {
        let layout = random_layout(seed);
        let (mrenclave, stream, _) = measure_ours(&layout);

        // An SGXS file is the measured stream, so its SHA-256 is MRENCLAVE.
        assert_eq!(Measurement(sha2::Sha256::digest(&stream).into()), mrenclave);

        // sgxs reads our stream (checking it is canonical) and hashes it to our MRENCLAVE.
        let mut input = &stream[..];
        let mut reader = CanonicalSgxsReader::new(&mut input);
        let theirs = sgxs::sigstruct::EnclaveHash::from_stream::<_, Hasher>(&mut reader).unwrap();
        assert_eq!(theirs.hash(), mrenclave.0, "seed {seed}");

        // sgxs's page reader sees our pages and data.
        let mut input = &stream[..];
        let (info, mut pages) = PageReader::new(&mut input).unwrap();
        let size = { info.ecreate.size };
        assert_eq!(size, layout.size);
        for page in &layout.pages {
            let (eadd, chunks, data) = pages.read_page().unwrap().unwrap();
            assert_eq!(eadd.offset, page.offset);
            assert_eq!(eadd.secinfo.flags.bits(), page.secinfo.to_u64());
            assert_eq!(chunks.0, page.measured);
            for i in 0..16 {
                if page.measured & (1 << i) != 0 {
                    assert_eq!(
                        data[i * 256..(i + 1) * 256],
                        page.data[i * 256..(i + 1) * 256]
                    );
                }
            }
        }
        assert!(pages.read_page().unwrap().is_none());

        // sgxs's writer produces our bytes exactly.
        assert!(
            write_with_sgxs_crate(&layout, false) == stream,
            "seed {seed}: streams differ"
        );

        // Our reader recomputes the same MRENCLAVE, also for sgxs streams that carry
        // unmeasured data (UNMEASRD records).
        let ours = measure_sgxs(&stream).unwrap();
        assert_eq!(ours.mrenclave, mrenclave);
        assert_eq!(ours.pages, layout.pages.len() as u64);
        assert_eq!(ours.size, layout.size);
        assert_eq!(ours.ssa_frame_size, layout.ssa_frame_size);
        let with_data = write_with_sgxs_crate(&layout, true);
        assert_eq!(measure_sgxs(&with_data).unwrap().mrenclave, mrenclave);
    }
}

#[test]
fn add_page_equals_eadd_plus_sixteen_eextends() {
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let page: &[u8; 4096] = data.as_slice().try_into().unwrap();
    let rx = SecInfo::reg(SecInfoFlags::R | SecInfoFlags::X);

    let mut a = MrEnclaveBuilder::new(1, 0x10000).unwrap();
    a.add_page(0x1000, rx, page, true).unwrap();
    a.add_page(
        0x2000,
        SecInfo::reg(SecInfoFlags::R | SecInfoFlags::W),
        page,
        false,
    )
    .unwrap();

    let mut b = MrEnclaveBuilder::new(1, 0x10000).unwrap();
    b.eadd(0x1000, rx).unwrap();
    for i in 0..16u64 {
        let chunk: &[u8; 256] = data[i as usize * 256..][..256].try_into().unwrap();
        b.eextend(0x1000 + i * 256, chunk).unwrap();
    }
    b.eadd(0x2000, SecInfo::reg(SecInfoFlags::R | SecInfoFlags::W))
        .unwrap();

    let (a, b) = (a.finish(), b.finish());
    assert_eq!(a.mrenclave, b.mrenclave);
    assert_eq!((a.pages, a.measured_chunks), (2, 16));

    // The content of an unmeasured page does not matter; that of a measured page does.
    let mut c = MrEnclaveBuilder::new(1, 0x10000).unwrap();
    c.add_page(0x1000, rx, page, true).unwrap();
    c.add_page(
        0x2000,
        SecInfo::reg(SecInfoFlags::R | SecInfoFlags::W),
        &[0; 4096],
        false,
    )
    .unwrap();
    assert_eq!(c.finish().mrenclave, a.mrenclave);
    let mut d = MrEnclaveBuilder::new(1, 0x10000).unwrap();
    d.add_page(0x1000, rx, &[0; 4096], true).unwrap();
    assert_ne!(d.finish().mrenclave, a.mrenclave);
}

#[test]
fn ecreate_only_matches_a_hand_computed_hash() {
    // "ECREATE\0" ‖ SSAFRAMESIZE=1 ‖ SIZE=0x2000 ‖ 44 zeros, hashed independently.
    let mut record = [0u8; 64];
    record[..8].copy_from_slice(b"ECREATE\0");
    record[8..12].copy_from_slice(&1u32.to_le_bytes());
    record[12..20].copy_from_slice(&0x2000u64.to_le_bytes());
    let expected = Measurement(sha2::Sha256::digest(record).into());
    assert_eq!(
        MrEnclaveBuilder::new(1, 0x2000).unwrap().finish().mrenclave,
        expected
    );
    assert_eq!(measure_sgxs(&record).unwrap().mrenclave, expected);
}

fn measure_err(e: Error) -> MeasureError {
    match e {
        Error::Measure(m) => m,
        other => panic!("expected a measurement error, got {other:?}"),
    }
}

#[test]
fn invalid_sequences_are_refused_and_change_nothing() {
    let r = SecInfo::reg(SecInfoFlags::R);
    let chunk = [0u8; 256];
    assert!(matches!(
        measure_err(MrEnclaveBuilder::new(1, 0x3000).unwrap_err()),
        MeasureError::BadSize(0x3000)
    ));
    assert!(matches!(
        measure_err(MrEnclaveBuilder::new(1, 0x1000).unwrap_err()),
        MeasureError::BadSize(0x1000)
    ));
    assert!(matches!(
        measure_err(MrEnclaveBuilder::new(0, 0x2000).unwrap_err()),
        MeasureError::ZeroSsaFrameSize
    ));

    let mut b = MrEnclaveBuilder::new(1, 0x10000).unwrap();
    let before = b.clone().finish().mrenclave;
    assert!(matches!(
        measure_err(b.eextend(0, &chunk).unwrap_err()),
        MeasureError::BadChunkOffset { offset: 0 }
    ));
    assert!(matches!(
        measure_err(b.eadd(0x10000, r).unwrap_err()),
        MeasureError::BadPageOffset {
            offset: 0x10000,
            size: 0x10000
        }
    ));
    assert!(matches!(
        measure_err(b.eadd(0x1001, r).unwrap_err()),
        MeasureError::BadPageOffset { offset: 0x1001, .. }
    ));
    assert!(matches!(
        measure_err(
            b.eadd(
                0x1000,
                SecInfo {
                    flags: SecInfoFlags::R,
                    page_type: PageType::TCS
                }
            )
            .unwrap_err()
        ),
        MeasureError::TcsPermissions { offset: 0x1000 }
    ));
    assert_eq!(
        b.clone().finish().mrenclave,
        before,
        "refused steps change nothing"
    );

    b.eadd(0x2000, r).unwrap();
    assert!(matches!(
        measure_err(b.eadd(0x2000, r).unwrap_err()),
        MeasureError::PageOrder {
            offset: 0x2000,
            previous: 0x2000
        }
    ));
    assert!(matches!(
        measure_err(b.eadd(0x1000, r).unwrap_err()),
        MeasureError::PageOrder {
            offset: 0x1000,
            previous: 0x2000
        }
    ));
    b.eextend(0x2100, &chunk).unwrap();
    for bad in [0x2100, 0x2080, 0x1f00, 0x3000] {
        assert!(matches!(
            measure_err(b.eextend(bad, &chunk).unwrap_err()),
            MeasureError::BadChunkOffset { offset } if offset == bad
        ));
    }
}

#[test]
fn malformed_sgxs_streams_are_refused() {
    // A small layout keeps the every-prefix loop quick: a TCS page, a partly measured page and
    // an unmeasured one.
    let page = |offset, secinfo, measured| Page {
        offset,
        secinfo,
        data: vec![0xa5; 4096],
        measured,
    };
    let layout = Layout {
        ssa_frame_size: 1,
        size: 0x10000,
        pages: vec![
            page(0, SecInfo::tcs(), 0x0001),
            page(
                0x1000,
                SecInfo::reg(SecInfoFlags::R | SecInfoFlags::W),
                0x8421,
            ),
            page(0x3000, SecInfo::reg(SecInfoFlags::R), 0),
        ],
    };
    let (_, stream, boundaries) = measure_ours(&layout);

    // A truncated stream is an error unless it ends exactly at a record boundary (SGXS is a
    // concatenation of records, so such a prefix is itself a complete, shorter stream).
    for len in 0..stream.len() {
        let result = measure_sgxs(&stream[..len]);
        if boundaries.contains(&len) {
            assert!(result.is_ok(), "prefix {len} at a record boundary");
        } else if len == 0 {
            assert!(matches!(
                result.map_err(measure_err),
                Err(MeasureError::Sgxs {
                    reason: "empty stream",
                    ..
                })
            ));
        } else {
            assert!(
                matches!(result, Err(Error::Truncated { .. })),
                "prefix {len}"
            );
        }
    }

    // Second ECREATE.
    let mut twice = stream.clone();
    twice.extend_from_slice(&stream[..64]);
    assert!(matches!(
        measure_sgxs(&twice).map_err(measure_err),
        Err(MeasureError::Sgxs {
            reason: "second ECREATE",
            ..
        })
    ));
    // Missing ECREATE.
    assert!(matches!(
        measure_sgxs(&stream[64..]).map_err(measure_err),
        Err(MeasureError::Sgxs {
            index: 0,
            reason: "stream does not start with ECREATE"
        })
    ));
    // Unknown tag.
    let mut bad = stream.clone();
    bad[64..72].copy_from_slice(b"EBLAH\0\0\0");
    assert!(matches!(
        measure_sgxs(&bad).map_err(measure_err),
        Err(MeasureError::UnknownTag { index: 1, .. })
    ));
    // Non-zero reserved bytes (the hash would no longer be SHA-256 of the file).
    let mut bad = stream.clone();
    bad[63] = 1;
    assert!(matches!(
        measure_sgxs(&bad).map_err(measure_err),
        Err(MeasureError::Sgxs {
            index: 0,
            reason: "non-zero reserved bytes in ECREATE"
        })
    ));
    // Unsized streams have no MRENCLAVE.
    let mut unsized_stream = stream.clone();
    unsized_stream[..8].copy_from_slice(b"UNSIZED\0");
    assert!(matches!(
        measure_sgxs(&unsized_stream).map_err(measure_err),
        Err(MeasureError::Unsized)
    ));
    // Out-of-order pages are caught by the same rules as the builder's.
    let mut two = MrEnclaveBuilder::with_sgxs(1, 0x10000).unwrap();
    two.eadd(0x1000, SecInfo::reg(SecInfoFlags::R)).unwrap();
    two.eadd(0x2000, SecInfo::reg(SecInfoFlags::R)).unwrap();
    let s = two.finish().sgxs.unwrap();
    let swapped = [&s[..64], &s[128..192], &s[64..128]].concat();
    assert!(matches!(
        measure_sgxs(&swapped).map_err(measure_err),
        Err(MeasureError::PageOrder {
            offset: 0x1000,
            previous: 0x2000
        })
    ));
}
