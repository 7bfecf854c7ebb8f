namespace ProxySelection.LabTool;

/// <summary>Process exit codes of <c>proxysel-lab</c> shared by its verbs; each verb adds its own (LabDemoExitCodes, InteropExitCodes).</summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>Bad command line.</summary>
    public const int Usage = 2;
}
