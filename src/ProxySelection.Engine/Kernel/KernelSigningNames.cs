namespace ProxySelection.Engine.Kernel;

/// <summary>
/// The kernel signer's cgroup is one per process: two daemons with the same chain prefix (one per namespace) must never
/// share one, or each would run the other's program with its own key on the other's sockets.
/// </summary>
public static class KernelSigningNames
{
    public static string ForProcess(string chainPrefix, int processId) => $"{Prefix(chainPrefix)}{processId}";

    /// <summary>What every cgroup of <paramref name="chainPrefix"/>'s daemons starts with (<c>proxysel cleanup</c>).</summary>
    public static string Prefix(string chainPrefix) => $"proxysel-{chainPrefix.ToLowerInvariant()}-";
}
