//! Which page of a list a request asks for: the one check every list shares.

use ccm_api::list::{DEFAULT_LIMIT, MAX_LIMIT, PageQuery};
use ccm_store::{PageRequest, Start};

use super::ServiceResult;
use super::validate::Checker;

/// The page `q` asks for: `limit` 1 to 1000 (default 100), and either a non-negative `offset`
/// or the `next` cursor of a previous page, not both.
pub fn page_request(q: &PageQuery) -> ServiceResult<PageRequest> {
    let mut c = Checker::new();
    if let Some(l) = q.limit {
        c.range("limit", l, 1, MAX_LIMIT);
    }
    if let Some(o) = q.offset {
        c.range("offset", o, 0, i64::MAX);
    }
    if q.offset.is_some() && q.next.is_some() {
        c.err("offset", "give either offset or next, not both");
    }
    if q.next
        .as_ref()
        .is_some_and(|n| n.is_empty() || n.len() > 512)
    {
        c.err(
            "next",
            "pass the `next` value of the previous page unchanged",
        );
    }
    c.finish()?;
    let start = match &q.next {
        Some(cursor) => Start::After(cursor.clone()),
        None => Start::Offset(q.offset.unwrap_or(0)),
    };
    Ok(PageRequest {
        limit: q.limit.unwrap_or(DEFAULT_LIMIT),
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: Option<i64>, offset: Option<i64>, next: Option<&str>) -> PageQuery {
        PageQuery {
            limit,
            offset,
            next: next.map(str::to_string),
        }
    }

    #[test]
    fn defaults_and_bounds() {
        let first = page_request(&q(None, None, None)).unwrap();
        assert_eq!((first.limit, first.start), (100, Start::Offset(0)));
        let by_cursor = page_request(&q(Some(1000), None, Some("abc"))).unwrap();
        assert_eq!(
            (by_cursor.limit, by_cursor.start),
            (1000, Start::After("abc".into()))
        );
        for bad in [
            q(Some(0), None, None),
            q(Some(1001), None, None),
            q(None, Some(-1), None),
            q(None, Some(5), Some("abc")),
            q(None, None, Some("")),
        ] {
            assert!(page_request(&bad).is_err(), "{bad:?}");
        }
    }
}
