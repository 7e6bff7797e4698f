//! The compiled example server (`cargo run --example server`) as a child process.

/// The example server's binary, which `cargo test` builds beside the test binaries; `None` (with
/// a loud message) when it was not built, which fails under CI (`CI` set).
pub fn example_server() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join("server");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the example server is not built: {}",
        path.display()
    );
    eprintln!(
        "\n!!! SKIPPED: build the example first (`cargo test` does, `cargo test --test NAME` does not)\n"
    );
    None
}

/// A child process, killed (SIGKILL) on drop.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
