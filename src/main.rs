fn main() {
    print!("{}", imagelabel::api::crds_yaml());
}
