//! authentik's page-number pagination, `ordering` and `search` parameters, and the queries that apply them.

use sea_orm::sea_query::{Expr, Func, SimpleExpr};
use sea_orm::{EntityTrait, FromQueryResult, Order, PaginatorTrait, QueryOrder, Select};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ApiConfig;
use crate::error::{Error, Result};

/// The `page`, `page_size`, `ordering` and `search` query parameters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// A page number within the paginated result set.
    pub page: Option<String>,
    /// Number of results to return per page.
    pub page_size: Option<String>,
    /// Which field to use when ordering the results; prefix with `-` for descending.
    pub ordering: Option<String>,
    /// A search term.
    pub search: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub page: u64,
    pub page_size: u64,
}

impl ListParams {
    /// Parses `page` and `page_size` within the configured bounds.
    pub fn page_request(&self, config: &ApiConfig) -> Result<PageRequest> {
        let page = match self.page.as_deref() {
            None | Some("") => 1,
            Some(text) => text.parse::<u64>().ok().filter(|p| *p >= 1).ok_or(Error::InvalidPage)?,
        };
        let page_size = match self.page_size.as_deref() {
            None | Some("") => config.default_page_size,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|s| *s >= 1)
                .ok_or_else(|| Error::field("page_size", "A positive integer is required."))?
                .min(config.max_page_size),
        };
        // The row offset must exist: a page far past any table is simply not there.
        let offset_fits = (page - 1).checked_mul(page_size).is_some_and(|offset| i64::try_from(offset).is_ok());
        if !offset_fits {
            return Err(Error::InvalidPage);
        }
        Ok(PageRequest { page, page_size })
    }

    /// The search term as a lower-case `LIKE` pattern, with wildcards in the term escaped.
    pub fn search_pattern(&self) -> Option<String> {
        contains_pattern(self.search.as_deref()?)
    }

    /// Applies `ordering` from the allowed `(name, column)` pairs, or `default` when absent.
    pub fn apply_ordering<E: EntityTrait>(
        &self,
        select: Select<E>,
        allowed: &[(&str, E::Column)],
        default: (E::Column, Order),
        tie_breaker: E::Column,
    ) -> Result<Select<E>> {
        let mut select = select;
        match self.ordering.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
            None => select = select.order_by(default.0, default.1),
            Some(ordering) => {
                for term in ordering.split(',') {
                    let (name, order) = match term.trim().strip_prefix('-') {
                        Some(name) => (name, Order::Desc),
                        None => (term.trim(), Order::Asc),
                    };
                    let column = allowed.iter().find(|(n, _)| *n == name).map(|(_, c)| *c).ok_or_else(|| {
                        let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                        Error::field("ordering", format!("Unknown field '{name}'; order by one of: {}.", names.join(", ")))
                    })?;
                    select = select.order_by(column, order);
                }
            }
        }
        Ok(select.order_by(tie_breaker, Order::Asc))
    }
}

/// A lower-case `LIKE` pattern matching values that contain `term` literally (wildcards in the
/// term are escaped); `None` for a blank term.
pub fn contains_pattern(term: &str) -> Option<String> {
    let term = term.trim();
    if term.is_empty() {
        return None;
    }
    let escaped = term.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    Some(format!("%{escaped}%"))
}

/// A boolean query parameter (`true`/`false`, `True`/`False`, `1`/`0`).
pub fn parse_bool(field: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "True" | "1" => Ok(true),
        "false" | "False" | "0" => Ok(false),
        _ => Err(Error::field(field, "Must be a valid boolean.")),
    }
}

/// A case-insensitive `LIKE` on a column.
pub fn ilike<C: sea_orm::ColumnTrait>(column: C, pattern: &str) -> SimpleExpr {
    use sea_orm::sea_query::ExprTrait;
    Expr::expr(Func::lower(Expr::col(column))).like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\'))
}

/// authentik's pagination object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pagination {
    pub next: u64,
    pub previous: u64,
    pub count: u64,
    pub current: u64,
    pub total_pages: u64,
    pub start_index: u64,
    pub end_index: u64,
}

/// A page of results, as authentik's `Paginated…List` objects.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Paginated<T> {
    pub pagination: Pagination,
    pub results: Vec<T>,
    /// Suggestions for the search box; authentik's clients require the object, and Gatehouse has
    /// none to offer, so it is always empty.
    #[schema(value_type = Object)]
    pub autocomplete: serde_json::Map<String, serde_json::Value>,
}

impl<T> Paginated<T> {
    /// Wraps one page of `results` out of `count`.
    pub fn new(request: PageRequest, count: u64, results: Vec<T>) -> Self {
        let total_pages = count.div_ceil(request.page_size).max(1);
        let start_index = if count == 0 { 0 } else { (request.page - 1) * request.page_size + 1 };
        let end_index = if count == 0 { 0 } else { start_index + results.len() as u64 - 1 };
        Self {
            pagination: Pagination {
                next: if request.page < total_pages { request.page + 1 } else { 0 },
                previous: request.page.saturating_sub(1),
                count,
                current: request.page,
                total_pages,
                start_index,
                end_index,
            },
            results,
            autocomplete: serde_json::Map::new(),
        }
    }

    /// Converts the results, keeping the pagination.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Paginated<U> {
        Paginated { pagination: self.pagination, results: self.results.into_iter().map(f).collect(), autocomplete: self.autocomplete }
    }
}

/// Refuses a page past the end (other than the first page of nothing), as DRF answers it: 404.
fn check_in_range(request: PageRequest, count: u64) -> Result<()> {
    if request.page > 1 && (request.page - 1) * request.page_size >= count {
        return Err(Error::InvalidPage);
    }
    Ok(())
}

/// Runs a select for one page. A page past the end is a 404, as DRF answers it.
pub async fn fetch_page<E>(db: &sea_orm::DatabaseConnection, select: Select<E>, request: PageRequest) -> Result<Paginated<E::Model>>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Send + Sync,
{
    let paginator = select.paginate(db, request.page_size);
    let count = paginator.num_items().await?;
    check_in_range(request, count)?;
    let items = paginator.fetch_page(request.page - 1).await?;
    Ok(Paginated::new(request, count, items))
}

/// One page of a list held in memory, with the same rules as [`fetch_page`].
pub fn page_of<T>(items: Vec<T>, request: PageRequest) -> Result<Paginated<T>> {
    let count = items.len() as u64;
    check_in_range(request, count)?;
    let skip = usize::try_from((request.page - 1) * request.page_size).unwrap_or(usize::MAX);
    let take = usize::try_from(request.page_size).unwrap_or(usize::MAX);
    Ok(Paginated::new(request, count, items.into_iter().skip(skip).take(take).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_object_matches_authentik() {
        let request = PageRequest { page: 2, page_size: 10 };
        let page = Paginated::new(request, 25, vec![0; 10]);
        let p = page.pagination;
        assert_eq!((p.next, p.previous, p.count, p.current, p.total_pages, p.start_index, p.end_index), (3, 1, 25, 2, 3, 11, 20));
        let empty = Paginated::<u8>::new(PageRequest { page: 1, page_size: 10 }, 0, vec![]).pagination;
        assert_eq!((empty.next, empty.previous, empty.total_pages, empty.start_index, empty.end_index), (0, 0, 1, 0, 0));
    }

    #[test]
    fn page_parameters_are_validated() {
        let config = ApiConfig::default();
        let params = ListParams { page: Some("0".into()), ..Default::default() };
        assert!(matches!(params.page_request(&config), Err(Error::InvalidPage)));
        let params = ListParams { page_size: Some("500".into()), ..Default::default() };
        assert_eq!(params.page_request(&config).unwrap().page_size, 100);
        let params = ListParams { page_size: Some("x".into()), ..Default::default() };
        assert!(matches!(params.page_request(&config), Err(Error::Validation(_))));
        // (page - 1) * page_size would wrap around in 64 bits.
        let params = ListParams { page: Some("288230376151711745".into()), page_size: Some("100".into()), ..Default::default() };
        assert!(matches!(params.page_request(&config), Err(Error::InvalidPage)));
    }

    #[test]
    fn search_escapes_wildcards() {
        let params = ListParams { search: Some(" 50%_Off ".into()), ..Default::default() };
        assert_eq!(params.search_pattern().unwrap(), "%50\\%\\_off%");
    }
}
