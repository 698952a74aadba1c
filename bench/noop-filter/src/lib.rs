//! Baseline for the benchmark: a Proxy-Wasm HTTP filter with every callback left at its
//! default (continue), so the difference to Alfred is Alfred's own work.

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
    }}

    struct NoopRoot;
    impl Context for NoopRoot {}
    impl RootContext for NoopRoot {
        fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Noop))
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Noop;
    impl Context for Noop {}
    impl HttpContext for Noop {}
}
