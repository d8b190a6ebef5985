use cache_device::deploy_cached;

cache_tests::device_handle!(Board);

impl Board {
    #[deploy_cached]
    async fn blink(&mut self, pin: u8) {
        "def blink(pin):\n    pass\n"
    }
}

fn main() {}
