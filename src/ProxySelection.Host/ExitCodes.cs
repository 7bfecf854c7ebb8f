namespace ProxySelection.Host;

/// <summary>Process exit codes of <c>proxysel</c>.</summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>An input file could not be opened, or is not a (fully) readable pcap.</summary>
    public const int FileNotReadable = 1;

    /// <summary>Bad command line.</summary>
    public const int Usage = 2;
}
