//! Floor for the benchmark: a Proxy-Wasm HTTP filter that makes the host calls Alfred
//! makes on a warm request — and nothing else. It reads the clock and the request
//! headers, swaps the credential header, holds the request until its body is read,
//! reads the response status, adds two response headers, and reads the response body.
//! What it costs over the do-nothing filter is what crossing into the VM costs for
//! Alfred's job on this runtime, before any of Alfred's own work.

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(HostCallsRoot) });
    }}

    struct HostCallsRoot;
    impl Context for HostCallsRoot {}
    impl RootContext for HostCallsRoot {
        fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(HostCalls { seen: 0 }))
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct HostCalls {
        /// Bytes read, kept so no read is optimised away.
        seen: usize,
    }

    impl Context for HostCalls {}

    impl HttpContext for HostCalls {
        fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
            let _ = hostcalls::get_current_time();
            self.seen += self.get_http_request_headers_bytes().len();
            self.set_http_request_header("authorization", Some("Bearer sk-bench"));
            if end_of_stream {
                Action::Continue
            } else {
                Action::Pause
            }
        }

        fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            if !end_of_stream {
                return Action::Pause;
            }
            self.seen += self
                .get_http_request_body(0, body_size)
                .map_or(0, |b| b.len());
            Action::Continue
        }

        fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
            self.seen += self
                .get_http_response_header_bytes(":status")
                .map_or(0, |s| s.len());
            self.set_http_response_header(
                "x-alfred-request-id",
                Some("0123456789abcdef0123456789abcdef"),
            );
            self.set_http_response_header("x-alfred-quota-remaining", Some("999999999"));
            Action::Continue
        }

        fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
            if end_of_stream {
                self.seen += self
                    .get_http_response_body(0, body_size)
                    .map_or(0, |b| b.len());
            }
            Action::Continue
        }
    }
}
