// A stand-in for libcuda.so that runs the CUDA backend's kernels on the CPU (emulate.h), so
// the whole backend, host code included, runs end to end on machines with no GPU. Device
// memory is host memory, every call but one kind completes before it returns (streams and events
// are otherwise no-ops), and cuModuleGetFunction finds the kernels by name in this library,
// whatever PTX it was given. The exception: a copy from or to page-locked memory stays in flight,
// as a GPU's DMA engine leaves it, until a later call needs it done (below), so host code that
// writes such a buffer again before its copy has passed sends the device the wrong bytes here
// too, and host code that reads one too early reads stale ones.
// Only the calls cudarc makes for this project are here: a missing one shows up as cudarc's
// "Missing symbol" error, which the backend turns into a fallback to the CPU.
//
// Built by tests/cuda_emulated.rs and put on LD_LIBRARY_PATH of one child process only. It names
// itself "FlowTracer CPU emulator (not a GPU)" so that no result is mistaken for a device's.
#include "emulate.h"
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "../../kernels/common.cuh"
#include "../../kernels/aggregate.cu"
#include "../../kernels/solve.cu"
#include "../../kernels/credit.cu"

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef void (*Trampoline)(void** a, dim3 g, dim3 b);

template <class T> T arg(void** a, int i) { return *(T*)a[i]; }

static void t_aggregate(void** a, dim3 g, dim3 b) {
    launch(aggregate, g, b, arg<const void*>(a, 0), arg<unsigned>(a, 1), arg<float*>(a, 2), arg<float*>(a, 3), arg<unsigned>(a, 4), arg<unsigned>(a, 5), arg<unsigned>(a, 6),
           arg<float>(a, 7), arg<float>(a, 8));
}
static void t_aggregate_group(void** a, dim3 g, dim3 b) {
    launch(aggregate_group, g, b, arg<const void*>(a, 0), arg<unsigned>(a, 1), arg<float*>(a, 2), arg<float*>(a, 3), arg<unsigned>(a, 4), arg<unsigned>(a, 5),
           arg<unsigned>(a, 6), arg<float>(a, 7), arg<float>(a, 8));
}
static void t_reach_block(void** a, dim3 g, dim3 b) {
    launch(reach_block, g, b, arg<const Job*>(a, 0), arg<const float*>(a, 1), arg<double*>(a, 2), arg<double*>(a, 3), arg<unsigned>(a, 4), arg<unsigned>(a, 5));
}
static void t_reach_push(void** a, dim3 g, dim3 b) {
    launch(reach_push, g, b, arg<const Job*>(a, 0), arg<const float*>(a, 1), arg<const double*>(a, 2), arg<double*>(a, 3), arg<unsigned>(a, 4), arg<unsigned>(a, 5));
}
static void t_flow_gather(void** a, dim3 g, dim3 b) {
    launch(flow_gather, g, b, arg<const Job*>(a, 0), arg<const float*>(a, 1), arg<const double*>(a, 2), arg<double*>(a, 3), arg<unsigned>(a, 4), arg<unsigned>(a, 5));
}
static void t_flow_block(void** a, dim3 g, dim3 b) {
    launch(flow_block, g, b, arg<const Job*>(a, 0), arg<const float*>(a, 1), arg<const double*>(a, 2), arg<const double*>(a, 3), arg<double*>(a, 4), arg<double*>(a, 5),
           arg<const double*>(a, 6), arg<unsigned>(a, 7), arg<unsigned>(a, 8));
}

static void t_throughput(void** a, dim3 g, dim3 b) {
    launch(throughput, g, b, arg<const Job*>(a, 0), arg<const double*>(a, 1), arg<const double*>(a, 2), arg<double*>(a, 3));
}
static void t_credit_select(void** a, dim3 g, dim3 b) {
    launch(credit_select, g, b, arg<const Job*>(a, 0), arg<const double*>(a, 1), arg<unsigned*>(a, 2));
}

struct Kernel {
    const char* name;
    Trampoline run;
};
static Kernel kernels[] = {{"aggregate", t_aggregate}, {"aggregate_group", t_aggregate_group}, {"reach_block", t_reach_block}, {"reach_push", t_reach_push}, {"flow_gather", t_flow_gather}, {"flow_block", t_flow_block},
                          {"throughput", t_throughput}, {"credit_select", t_credit_select}};

static int context_token;
static thread_local void* current = nullptr;
static int launches = 0;

// Page-locked host memory is host memory here too, but remembered: copies from and to it stay
// in flight. They land, in the order queued, when anything that could see their bytes runs: a
// kernel, a copy not itself left in flight, a wait on the stream or an event, freeing either end. Recording an event
// does not land them, and a wait on an event lands only the copies queued before it was
// recorded, so only waiting on the right event says a buffer may be written again.
struct InFlight { void* d; const void* s; size_t n; unsigned long long seq; };
static std::mutex flight_lock;
static std::vector<std::pair<const char*, size_t>> page_locked;
static std::vector<InFlight> in_flight;
static unsigned long long queued = 0;
// Lands the copies queued before the `upto`th (all of them by default).
static void land(unsigned long long upto = ~0ull) {
    std::lock_guard<std::mutex> g(flight_lock);
    size_t k = 0;
    for (; k < in_flight.size() && in_flight[k].seq < upto; ++k) std::memcpy(in_flight[k].d, in_flight[k].s, in_flight[k].n);
    in_flight.erase(in_flight.begin(), in_flight.begin() + k);
}
static bool is_page_locked(const void* p) {
    std::lock_guard<std::mutex> g(flight_lock);
    for (auto& [at, n] : page_locked)
        if ((const char*)p >= at && (const char*)p < at + n) return true;
    return false;
}
extern "C" {
CUresult cuInit(unsigned) { return 0; }
CUresult cuDriverGetVersion(int* v) { *v = 12060; return 0; }
// FLOWTRACER_FAKE_CUDA_DEVICES=k: k devices (1 unless set), each with a primary context of its own.
static int device_count() {
    const char* v = std::getenv("FLOWTRACER_FAKE_CUDA_DEVICES");
    int n = v ? std::atoi(v) : 1;
    return n < 1 ? 1 : (n > 16 ? 16 : n);
}
static int primary[16];
CUresult cuDeviceGetCount(int* n) { *n = device_count(); return 0; }
CUresult cuDeviceGet(int* d, int ordinal) { *d = ordinal; return ordinal >= 0 && ordinal < device_count() ? 0 : 101; /* CUDA_ERROR_INVALID_DEVICE */ }
CUresult cuDeviceGetName(char* name, int len, int) {
    std::snprintf(name, len, "FlowTracer CPU emulator (not a GPU)");
    return 0;
}
CUresult cuDeviceGetAttribute(int* v, int attribute, int) {
    // 75/76: compute capability; everything else (memory pools included) reads as absent.
    *v = attribute == 75 ? 9 : 0;
    return 0;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, int) { *bytes = 8ull << 30; return 0; }
CUresult cuDevicePrimaryCtxRetain(void** ctx, int d) { *ctx = &primary[d]; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int) { return 0; }
CUresult cuCtxGetCurrent(void** ctx) { *ctx = current; return 0; }
CUresult cuCtxSetCurrent(void* ctx) { current = ctx; return 0; }
CUresult cuCtxSynchronize() { land(); return 0; }
CUresult cuMemGetInfo_v2(size_t* free, size_t* total) { *free = 4ull << 30; *total = 8ull << 30; return 0; }

CUresult cuModuleLoadData(void** module, const void* image) {
    // Only PTX from NVRTC comes here: it must hold every kernel this library stands in for.
    const char* ptx = (const char*)image;
    for (auto& k : kernels)
        if (!std::strstr(ptx, (std::string(".entry ") + k.name).c_str())) return 200; /* CUDA_ERROR_INVALID_IMAGE */
    *module = &context_token;
    return 0;
}
CUresult cuModuleUnload(void*) { return 0; }
CUresult cuModuleGetFunction(void** f, void*, const char* name) {
    for (auto& k : kernels)
        if (!std::strcmp(k.name, name)) { *f = &k; return 0; }
    return 500; /* CUDA_ERROR_NOT_FOUND */
}
// FLOWTRACER_FAKE_CUDA_FAIL_LAUNCH=k: the k-th launch fails as a lost device would (the test of
// the backend's fallback to the CPU).
static int fail_at() {
    const char* v = std::getenv("FLOWTRACER_FAKE_CUDA_FAIL_LAUNCH");
    return v ? std::atoi(v) : 0;
}

CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned, void*, void** params, void**) {
    if (gx == 0 || gy == 0 || gz != 1 || by != 1 || bz != 1 || bx == 0 || bx > 1024) return 1; /* CUDA_ERROR_INVALID_VALUE */
    if (launches + 1 == fail_at()) return 999; /* CUDA_ERROR_UNKNOWN */
    land();
    ((Kernel*)f)->run(params, dim3{gx, gy, 1}, dim3{bx, 1, 1});
    ++launches;
    return 0;
}

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) {
    if (bytes == 0) return 1;
    *p = (CUdeviceptr)std::malloc(bytes);
    return *p ? 0 : 2; /* CUDA_ERROR_OUT_OF_MEMORY */
}
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, void*) { return cuMemAlloc_v2(p, bytes); }
CUresult cuMemFree_v2(CUdeviceptr p) { land(); std::free((void*)p); return 0; }
CUresult cuMemFreeAsync(CUdeviceptr p, void*) { return cuMemFree_v2(p); }
// FLOWTRACER_FAKE_CUDA_NO_PAGE_LOCKED=1: a machine that refuses page-locked memory.
CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) {
    if (const char* v = std::getenv("FLOWTRACER_FAKE_CUDA_NO_PAGE_LOCKED"); v && std::strcmp(v, "0")) return 2; /* CUDA_ERROR_OUT_OF_MEMORY */
    *p = std::malloc(bytes ? bytes : 1);
    if (!*p) return 2;
    std::lock_guard<std::mutex> g(flight_lock);
    page_locked.push_back({(const char*)*p, bytes});
    return 0;
}
CUresult cuMemFreeHost(void* p) {
    land();
    std::lock_guard<std::mutex> g(flight_lock);
    std::erase_if(page_locked, [p](auto& b) { return b.first == (const char*)p; });
    std::free(p);
    return 0;
}
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { land(); std::memset((void*)p, v, n); return 0; }
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, void*) { return cuMemsetD8_v2(p, v, n); }
// Bytes copied host to device so far: a test of attention that is already on the device reads
// it (through dlsym) to see that the attention did not go up.
static unsigned long long bytes_up = 0;
unsigned long long flowtracer_fake_bytes_up() { return bytes_up; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* s, size_t n) { land(); std::memcpy((void*)d, s, n); bytes_up += n; return 0; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, void*) {
    if (!is_page_locked(s)) return cuMemcpyHtoD_v2(d, s, n);
    std::lock_guard<std::mutex> g(flight_lock);
    in_flight.push_back({(void*)d, s, n, queued++});
    bytes_up += n;
    return 0;
}
CUresult cuMemcpyDtoH_v2(void* d, CUdeviceptr s, size_t n) { land(); std::memcpy(d, (const void*)s, n); return 0; }
CUresult cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, void*) {
    if (!is_page_locked(d)) return cuMemcpyDtoH_v2(d, s, n);
    std::lock_guard<std::mutex> g(flight_lock);
    in_flight.push_back({d, (const void*)s, n, queued++});
    return 0;
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void*) { land(); std::memcpy((void*)d, (const void*)s, n); return 0; }

// Any address is device memory of the current context's device here (a test hands over host
// memory as the device's).
CUresult cuPointerGetAttribute(void* data, int attribute, CUdeviceptr) {
    if (attribute == 2) { *(unsigned*)data = 2; return 0; } /* CU_POINTER_ATTRIBUTE_MEMORY_TYPE: DEVICE */
    if (attribute == 9) { *(int*)data = current ? (int)((int*)current - primary) : 0; return 0; } /* ..._DEVICE_ORDINAL */
    return 1;
}
// The allocation holding an address: unknown here, so the address space from it on, unless a test
// sets FLOWTRACER_FAKE_CUDA_ALLOCATION (bytes) to make every allocation that size.
CUresult cuMemGetAddressRange_v2(CUdeviceptr* base, size_t* size, CUdeviceptr p) {
    const char* v = std::getenv("FLOWTRACER_FAKE_CUDA_ALLOCATION");
    *base = p;
    *size = v ? (size_t)std::atoll(v) : ~(size_t)0 - p;
    return 0;
}
CUresult cuStreamSynchronize(void*) { land(); return 0; }
CUresult cuStreamWaitEvent(void*, void*, unsigned) { return 0; }
// An event is the moment it was recorded: every call here runs to its end before it returns, so
// that is when the work queued before it finished, and the time between two is what it took.
struct Event {
    double ms = 0;
    unsigned long long upto = 0; // the copies in flight queued before it was recorded
};
CUresult cuEventCreate(void** e, unsigned) { *e = new Event(); return 0; }
CUresult cuEventRecord(void* e, void*) {
    {
        std::lock_guard<std::mutex> g(flight_lock);
        ((Event*)e)->upto = queued;
    }
    ((Event*)e)->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
    return 0;
}
CUresult cuEventSynchronize(void* e) { land(((Event*)e)->upto); return 0; }
CUresult cuEventQuery(void* e) { land(((Event*)e)->upto); return 0; }
CUresult cuEventElapsedTime(float* ms, void* start, void* end) { *ms = (float)(((Event*)end)->ms - ((Event*)start)->ms); return 0; }
CUresult cuEventDestroy_v2(void* e) { delete (Event*)e; return 0; }
CUresult cuGetErrorString(CUresult, const char** s) { *s = "error in the CPU emulator of the CUDA driver"; return 0; }
CUresult cuGetErrorName(CUresult, const char** s) { *s = "CUDA_ERROR_EMULATOR"; return 0; }
}
