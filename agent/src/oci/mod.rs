//! OCI registries (the distribution API) as a puller: `oci://` references, manifests
//! and indexes checked byte for byte against their digests, the layer that is a disk
//! image or the config and layers of a container image, and Basic or Bearer
//! authentication. The blob itself is streamed by the image
//! source (`image::source`), like any URL.

pub mod auth;
pub mod client;
pub mod container;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod reference;
pub mod resolve;
pub mod select;
pub mod signature;

#[cfg(test)]
mod tests;

pub use auth::Credentials;
pub use client::Registry;
pub use container::{resolve_container, ContainerImage, ImageLayer, LayerCodec};
pub use error::OciError;
pub use reference::{Reference, ReferenceError, SCHEME};
pub use resolve::{resolve, Layer, Resolved};
