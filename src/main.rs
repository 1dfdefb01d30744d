fn main() {
    print!("{}", ispcert::crd::crds_yaml());
}
