//! Rebuilds the crate when the UI's build output changes (a new build renames its
//! hashed files), so that the embedded files are always the committed ones.

fn main() {
    println!("cargo:rerun-if-changed=../../ui/dist");
    println!("cargo:rerun-if-changed=../../ui/dist/assets");
}
