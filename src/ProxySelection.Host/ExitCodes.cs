namespace ProxySelection.Host;

/// <summary>
/// Process exit codes of <c>proxysel</c>. <c>proxysel run</c> exits with one code per class of start failure, so a
/// supervisor can tell "fix the configuration" from "fix the host" (systemd: <c>RestartPreventExitStatus=2 3 4 5 6 7</c>).
/// </summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>An input file could not be opened, or is not a (fully) readable pcap; a control client got no answer.</summary>
    public const int FileNotReadable = 1;

    /// <summary>Bad command line, or an invalid configuration (every bad key named on stderr); nothing was started.</summary>
    public const int Usage = 2;

    /// <summary>Not root and without the capability needed: CAP_NET_ADMIN (NFQUEUE, iptables, the MPTCP netlink), CAP_NET_BIND_SERVICE for a port below 1024.</summary>
    public const int NotPermitted = 3;

    /// <summary>A listen or announce address is not an address of this host (EADDRNOTAVAIL), e.g. <c>--socks 198.18.99.99:1080</c>.</summary>
    public const int AddressNotAvailable = 4;

    /// <summary>A port the proxy listens on is in use by another socket (EADDRINUSE).</summary>
    public const int PortInUse = 5;

    /// <summary>The NFQUEUE queue number (Proxy:QueueNumber) is bound by another process, e.g. a second proxysel.</summary>
    public const int QueueInUse = 6;

    /// <summary>
    /// A kernel module or feature is missing or off: MPTCP disabled (<c>net.mptcp.enabled=0</c>) or absent, iptables'
    /// NFQUEUE or TPROXY target or socket match, nfnetlink_queue, the iptables tool itself.
    /// </summary>
    public const int KernelFeatureMissing = 7;

    /// <summary>Any other start failure (the event file cannot be opened, the Prometheus endpoint cannot be served, ...).</summary>
    public const int StartFailed = 8;
}
