namespace ProxySelection.Interception.Nfqueue;

/// <summary>The C library's heap (the runtime's and the native libraries' allocations).</summary>
public static class NativeHeap
{
    /// <summary>Returns the heap's free memory to the system (glibc malloc_trim); true when some was returned.</summary>
    public static bool Trim() => InterceptionNative.malloc_trim(0) == 1;
}
