use cache_device::deploy_cached;

cache_tests::device_handle!(Board);

impl Board {
    #[deploy_cached]
    async fn read(&mut self, pin: u8) -> u8 {
        "def read(pin):\n    return pin\n"
    }
}

fn main() {}
