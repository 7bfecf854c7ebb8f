namespace ProxySelection.Interception.Nfqueue;

/// <summary>The kernel refused an NFQUEUE request (bind, config, send) or a packet handler failed.</summary>
public sealed class NfqueueException : Exception
{
    public NfqueueException() { }

    public NfqueueException(string message) : base(message) { }

    public NfqueueException(string message, Exception inner) : base(message, inner) { }

    public NfqueueException(string message, int errno) : base($"{message}: {InterceptionNativeText(errno)}") => Errno = errno;

    /// <summary>The positive errno the kernel returned, 0 when not a kernel error.</summary>
    public int Errno { get; }

    private static string InterceptionNativeText(int errno) => InterceptionNative.Describe(errno);
}
