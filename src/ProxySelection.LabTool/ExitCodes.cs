namespace ProxySelection.LabTool;

/// <summary>
/// Process exit codes of <c>proxysel-lab</c> that its verbs share (demo, interop and bench add their own: 1 for a run
/// that did not come out as expected, 130 when interrupted).
/// </summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>Bad command line.</summary>
    public const int Usage = 2;

    /// <summary>Not root: namespaces and firewall rules need it.</summary>
    public const int NotRoot = 3;

    /// <summary>A tool (Debian package) is missing and was not or could not be installed, or the kernel has no MPTCP.</summary>
    public const int PrerequisitesMissing = 4;

    /// <summary>No <c>proxysel</c> daemon to start: none named, none beside the tool, none built in the repository, none on PATH.</summary>
    public const int DaemonNotFound = 5;
}
