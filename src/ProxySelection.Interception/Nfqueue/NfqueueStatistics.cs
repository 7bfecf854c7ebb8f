namespace ProxySelection.Interception.Nfqueue;

/// <summary>Counters of one <see cref="NfqueueClient"/>, safe to read from any thread.</summary>
public sealed class NfqueueStatistics
{
    private long packetsReceived;
    private long verdictsSent;
    private long receiveOverruns;
    private long malformedMessages;
    private long netlinkErrors;
    private long failOpenAccepts;
    private int lastErrno;

    /// <summary>Packet messages decoded and handed to a handler.</summary>
    public long PacketsReceived => Interlocked.Read(ref packetsReceived);

    public long VerdictsSent => Interlocked.Read(ref verdictsSent);

    /// <summary>ENOBUFS from recvmmsg: the kernel dropped messages because our receive buffer was full (fail-open
    /// queues accept them, others drop them). Counted; receiving continues.</summary>
    public long ReceiveOverruns => Interlocked.Read(ref receiveOverruns);

    /// <summary>Messages that did not decode (or were of an unexpected type). Never fatal.</summary>
    public long MalformedMessages => Interlocked.Read(ref malformedMessages);

    /// <summary>NLMSG_ERROR with a non-zero errno (e.g. ENOENT for a verdict on an id the kernel no longer holds).</summary>
    public long NetlinkErrors => Interlocked.Read(ref netlinkErrors);

    /// <summary>Packets this client accepted on its own: during setup, after a handler threw, or with a malformed message.</summary>
    public long FailOpenAccepts => Interlocked.Read(ref failOpenAccepts);

    /// <summary>The errno of the latest netlink error, 0 if none.</summary>
    public int LastErrno => Volatile.Read(ref lastErrno);

    internal void AddPacket() => Interlocked.Increment(ref packetsReceived);

    internal void AddVerdicts(int count) => Interlocked.Add(ref verdictsSent, count);

    internal void AddOverrun() => Interlocked.Increment(ref receiveOverruns);

    internal void AddMalformed() => Interlocked.Increment(ref malformedMessages);

    internal void AddFailOpenAccept() => Interlocked.Increment(ref failOpenAccepts);

    internal void AddNetlinkError(int errno)
    {
        Interlocked.Increment(ref netlinkErrors);
        Volatile.Write(ref lastErrno, errno);
    }
}
