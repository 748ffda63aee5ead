//! Read-through caching decorator (in progress).

/// A [`crate::store::UserStore`] that caches reads in a [`super::Cache`].
#[derive(Debug)]
pub struct CachingUserStore;
