//! Small file helpers shared by the test bed's modules.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::TestbedError;

/// Writes a file readable only by its owner: it may hold private keys.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), TestbedError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TestbedError::io(format!("creating {}", path.display()), e))?;
    file.write_all(contents.as_bytes()).map_err(|e| TestbedError::io(format!("writing {}", path.display()), e))
}

/// Creates a directory (and its parents) or says which one could not be made.
pub(crate) fn create_dir(path: &Path) -> Result<(), TestbedError> {
    std::fs::create_dir_all(path).map_err(|e| TestbedError::io(format!("creating {}", path.display()), e))
}
