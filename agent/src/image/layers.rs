//! Container images from a registry, for `format: rootfs`: the image (manifest, config,
//! layers) resolved once over the URL and its `oci://` mirrors, then each layer
//! streamed like any image (mirrors in turn, `Range` resume, a new token after a 401),
//! checked against its digest at its end and decompressed as its media type says (the
//! first bytes must agree).

use super::codec::Compression;
use super::error::ImageError;
use super::options::WriteOptions;
use super::reader::VerifiedStream;
use super::source::Session;
use crate::oci::{ContainerImage, ImageLayer, LayerCodec};
use std::sync::Arc;

/// A pull of one container image: its URLs and what every request shares.
pub struct ContainerPull {
    session: Session,
    url: String,
}

impl ContainerPull {
    /// A pull from `urls` (the `oci://` reference first, then its mirrors).
    pub fn new(urls: &[String], opts: &WriteOptions) -> Result<ContainerPull, ImageError> {
        let url = urls.first().ok_or(ImageError::NoSource)?.clone();
        Ok(ContainerPull {
            session: Session::new(urls, None, opts.fetch_config()),
            url,
        })
    }

    /// The image: manifest (checked against the pinned digest), config, layers.
    pub fn image(&self) -> Result<Arc<ContainerImage>, ImageError> {
        self.session.container()
    }

    /// Checks that the registry has every layer blob with its size (`HEAD`); the
    /// image, resolved.
    pub fn check(&self) -> Result<Arc<ContainerImage>, ImageError> {
        let image = self.image()?;
        for (i, layer) in image.layers.iter().enumerate() {
            self.session
                .has_layer(layer)
                .map_err(|e| ImageError::Fetch {
                    url: self.url.clone(),
                    cause: format!(
                        "layer {} of {} ({}) of manifest {} cannot be pulled: {e}",
                        i + 1,
                        image.layers.len(),
                        layer.digest,
                        image.manifest
                    ),
                })?;
        }
        Ok(image)
    }

    /// Layer `layer` of `image`, decompressed, as a reader verified against the
    /// layer's digest at its end (the download runs on its own thread).
    pub fn layer(
        &self,
        image: &ContainerImage,
        layer: &ImageLayer,
    ) -> Result<VerifiedStream, ImageError> {
        let stream = self.session.layer_stream(image, layer)?;
        let url = self.url.clone();
        VerifiedStream::start(stream, &self.url, |found| {
            let declared = compression(layer.codec);
            if found == declared {
                return Ok(());
            }
            Err(ImageError::Fetch {
                url,
                cause: format!(
                    "layer {} is declared {} ({}) but its first bytes are {found}: the image was built or pushed wrongly; push it again",
                    layer.digest, layer.media_type, declared
                ),
            })
        })
    }
}

/// The decompression a layer's media type names.
pub fn compression(codec: LayerCodec) -> Compression {
    match codec {
        LayerCodec::Tar => Compression::None,
        LayerCodec::Gzip => Compression::Gzip,
        LayerCodec::Zstd => Compression::Zstd,
    }
}
