//! The host-calls floor again, written against the bare Proxy-Wasm ABI (0.2.1) instead
//! of the SDK. It makes the same host calls as `bench/host-calls-filter`, but exports
//! only the callbacks it needs: no `proxy_on_log`, `proxy_on_done` or `proxy_on_delete`,
//! no per-context objects, no dispatcher. If this mode costs what the SDK floor costs,
//! the SDK and the callbacks Envoy makes into the VM are not where a filter's time goes:
//! the host calls that move data in and out of the VM are.

#[cfg(target_arch = "wasm32")]
mod filter {
    /// Map and buffer types of the ABI.
    const REQUEST_HEADERS: u32 = 0;
    const RESPONSE_HEADERS: u32 = 2;
    const REQUEST_BODY: u32 = 0;
    const RESPONSE_BODY: u32 = 1;
    /// Filter statuses of the ABI.
    const CONTINUE: u32 = 0;
    const STOP_ITERATION: u32 = 1;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
        fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_get_buffer_bytes(
            buffer: u32,
            start: usize,
            max_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
    }

    /// Frees what the host returned (allocated by [`proxy_on_memory_allocate`]).
    fn release(data: *mut u8, size: usize) {
        if !data.is_null() && size > 0 {
            // SAFETY: the host filled a buffer it got from `proxy_on_memory_allocate`,
            // a `Vec<u8>` of capacity `size`; it is freed once, here.
            drop(unsafe { Vec::from_raw_parts(data, size, size) });
        }
    }

    /// Calls a host function that returns a buffer, then frees the buffer.
    fn read(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) {
        let (mut data, mut size) = (std::ptr::null_mut(), 0);
        if call(&mut data, &mut size) == 0 {
            release(data, size);
        }
    }

    fn replace(map: u32, name: &str, value: &str) {
        // SAFETY: both slices outlive the call; the host copies them.
        unsafe {
            proxy_replace_header_map_value(
                map,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            );
        }
    }

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        let mut buffer: Vec<u8> = Vec::with_capacity(size);
        let data = buffer.as_mut_ptr();
        std::mem::forget(buffer);
        data
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(_context: u32, _parent: u32) {}

    #[no_mangle]
    pub extern "C" fn proxy_on_vm_start(_context: u32, _size: usize) -> bool {
        true
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_configure(_context: u32, _size: usize) -> bool {
        true
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_headers(_context: u32, _headers: usize, end: bool) -> u32 {
        let mut now = 0u64;
        // SAFETY: the host writes one u64 through the pointer.
        unsafe { proxy_get_current_time_nanoseconds(&mut now) };
        // SAFETY: out-parameters for the host (see `read`).
        read(|data, size| unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, data, size) });
        replace(REQUEST_HEADERS, "authorization", "Bearer sk-bench");
        if end {
            CONTINUE
        } else {
            STOP_ITERATION
        }
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_body(_context: u32, size: usize, end: bool) -> u32 {
        if !end {
            return STOP_ITERATION;
        }
        // SAFETY: out-parameters for the host (see `read`).
        read(|data, out| unsafe { proxy_get_buffer_bytes(REQUEST_BODY, 0, size, data, out) });
        CONTINUE
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(_context: u32, _headers: usize, _end: bool) -> u32 {
        let status = ":status";
        // SAFETY: the key outlives the call; out-parameters for the host (see `read`).
        read(|data, size| unsafe {
            proxy_get_header_map_value(RESPONSE_HEADERS, status.as_ptr(), status.len(), data, size)
        });
        replace(
            RESPONSE_HEADERS,
            "x-alfred-request-id",
            "0123456789abcdef0123456789abcdef",
        );
        replace(RESPONSE_HEADERS, "x-alfred-quota-remaining", "999999999");
        CONTINUE
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_body(_context: u32, size: usize, end: bool) -> u32 {
        if end {
            // SAFETY: out-parameters for the host (see `read`).
            read(|data, out| unsafe { proxy_get_buffer_bytes(RESPONSE_BODY, 0, size, data, out) });
        }
        CONTINUE
    }
}
