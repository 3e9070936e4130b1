//! A never-panicking cursor over a byte slice, in the style of rustls' codec `Reader`.

use zerocopy::{FromBytes, Immutable, KnownLayout};

use crate::Error;

/// A cursor over borrowed bytes. Every read names the field it reads, so a short buffer gives an
/// error such as `truncated quote.signature_data_len: needed 4 bytes, 2 available`.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The unread bytes, consuming the reader.
    pub(crate) fn into_rest(self) -> &'a [u8] {
        self.rest
    }

    /// Takes `n` bytes.
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Error> {
        match self.rest.split_at_checked(n) {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(head)
            }
            None => Err(Error::Truncated {
                field,
                needed: n,
                available: self.rest.len(),
            }),
        }
    }

    /// Takes a fixed-size array.
    pub(crate) fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Error> {
        let bytes = self.take(N, field)?;
        <[u8; N]>::try_from(bytes).map_err(|_| Error::Truncated {
            field,
            needed: N,
            available: bytes.len(),
        })
    }

    /// Reads a little-endian `u16`.
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// Reads a little-endian `u32`.
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// Reads a fixed-layout structure by value.
    pub(crate) fn read<T: FromBytes + KnownLayout + Immutable>(
        &mut self,
        field: &'static str,
    ) -> Result<T, Error> {
        let bytes = self.take(size_of::<T>(), field)?;
        T::read_from_bytes(bytes).map_err(|_| Error::Truncated {
            field,
            needed: size_of::<T>(),
            available: bytes.len(),
        })
    }

    /// Takes a field whose length was read from the input, after checking it against `limit`.
    pub(crate) fn take_capped(
        &mut self,
        len: u64,
        limit: usize,
        field: &'static str,
    ) -> Result<&'a [u8], Error> {
        let n = usize::try_from(len)
            .ok()
            .filter(|n| *n <= limit)
            .ok_or(Error::TooLong {
                field,
                declared: len,
                limit,
            })?;
        self.take(n, field)
    }

    /// Succeeds only if every byte has been read.
    pub(crate) fn finish(self, structure: &'static str) -> Result<(), Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes {
                structure,
                count: self.rest.len(),
            })
        }
    }
}

/// Parses a fixed-layout structure from exactly `size_of::<T>()` bytes.
pub(crate) fn parse_exact<T: FromBytes + KnownLayout + Immutable>(
    bytes: &[u8],
    structure: &'static str,
) -> Result<T, Error> {
    T::read_from_bytes(bytes).map_err(|_| Error::Length {
        structure,
        expected: size_of::<T>(),
        actual: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_name_the_field() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0201);
        let err = r.u32("quote.signature_data_len").unwrap_err();
        assert!(matches!(
            err,
            Error::Truncated {
                field: "quote.signature_data_len",
                needed: 4,
                available: 1
            }
        ));
        assert_eq!(r.remaining(), 1);
        assert!(matches!(
            r.finish("x"),
            Err(Error::TrailingBytes {
                structure: "x",
                count: 1
            })
        ));
    }

    #[test]
    fn capped_lengths_are_refused_before_reading() {
        let mut r = Reader::new(&[0; 8]);
        assert!(matches!(
            r.take_capped(u64::MAX, 4, "f"),
            Err(Error::TooLong {
                field: "f",
                declared: u64::MAX,
                limit: 4
            })
        ));
        assert!(r.take_capped(8, 8, "f").is_ok());
    }
}
