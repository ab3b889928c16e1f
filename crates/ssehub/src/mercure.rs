//! The Mercure protocol mode (draft-dunglas-mercure, the 0.x hub protocol), in the
//! making. So far:
//!
//! - `uri_template`: [`UriTemplate`], the RFC 6570 URI templates subscribers select
//!   topics with, compiled to linear-time matchers.

// Nothing calls the matcher yet: the Mercure endpoint will, to match its subscribers'
// topic selectors against each update's topics. Until then only the tests do.
#[allow(dead_code)]
mod selector;
#[allow(dead_code)]
mod uri_template;

#[allow(unused_imports)] // the Mercure endpoint will use them (see above)
pub(crate) use uri_template::{TemplateError, UriTemplate};
