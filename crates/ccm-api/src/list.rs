//! Paged lists: a collection's `GET` answers `{"items": [...], "metadata": {...}}`.
//!
//! The shape and the `limit`/`offset` parameters are the reference API's (its `SearchMetadata`:
//! `page`, `pages`, `limit`, `offset`, `total_count`, `filtered_count`). ccm adds `next`: an
//! opaque cursor naming the last item of the page. Passing it back as `?next=` reads the
//! following page from that item on, at a cost that does not grow with the position and without
//! the skips and repeats offsets suffer while items are added or removed. Offsets still work.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Items per page when the request names no `limit`.
pub const DEFAULT_LIMIT: i64 = 100;

/// The largest `limit` a list accepts.
pub const MAX_LIMIT: i64 = 1000;

/// Paging parameters every list accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Items to skip (default 0). Not together with `next`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The `metadata.next` of the previous page: continue after its last item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl PageQuery {
    /// The page after the one `next` names, of the same size.
    pub fn after(limit: Option<i64>, next: String) -> Self {
        Self {
            limit,
            offset: None,
            next: Some(next),
        }
    }
}

/// What a list page says about the list (the reference's `SearchMetadata`, with `next`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListMetadata {
    /// The page number, from 1 (`offset / limit + 1`); absent on a page read by cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<i64>,
    /// Pages of `limit` items the filtered list fills.
    pub pages: i64,
    /// The page size used.
    pub limit: i64,
    /// Items skipped before this page; absent on a page read by cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Items in the list without filters.
    pub total_count: i64,
    /// Items matching the request's filters.
    pub filtered_count: i64,
    /// Cursor of the next page (`?next=`); absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl ListMetadata {
    /// The metadata of a page of `limit` items starting at `offset` (when known) of a list of
    /// `filtered_count` matching items out of `total_count`.
    pub fn new(
        limit: i64,
        offset: Option<i64>,
        total_count: i64,
        filtered_count: i64,
        next: Option<String>,
    ) -> Self {
        let limit = limit.max(1);
        Self {
            page: offset.map(|o| o / limit + 1),
            pages: (filtered_count + limit - 1) / limit,
            limit,
            offset,
            total_count,
            filtered_count,
            next,
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListResponse<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Counts and the way to the next page.
    pub metadata: ListMetadata,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_counts_pages_of_the_filtered_list() {
        let m = ListMetadata::new(10, Some(20), 95, 41, Some("c".into()));
        assert_eq!((m.page, m.pages, m.offset), (Some(3), 5, Some(20)));
        let empty = ListMetadata::new(100, Some(0), 0, 0, None);
        assert_eq!((empty.page, empty.pages), (Some(1), 0));
        let by_cursor = ListMetadata::new(10, None, 95, 95, None);
        assert_eq!((by_cursor.page, by_cursor.pages), (None, 10));
    }

    #[test]
    fn a_page_reads_as_the_reference_shape() {
        let page = ListResponse {
            items: vec![1, 2],
            metadata: ListMetadata::new(2, Some(0), 3, 3, Some("n".into())),
        };
        let v = serde_json::to_value(&page).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"items": [1, 2], "metadata": {"page": 1, "pages": 2, "limit": 2,
                "offset": 0, "total_count": 3, "filtered_count": 3, "next": "n"}})
        );
    }
}
