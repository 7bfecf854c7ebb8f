namespace ProxySelection.Lab;

/// <summary>A veth pair between two namespaces.</summary>
public sealed record VethLink(NetNamespace A, string ADevice, NetNamespace B, string BDevice);

/// <summary>
/// A set of namespaces, links and processes that belong together. Dispose removes all of it: processes stopped by
/// their pid (group), then the namespaces deleted. Names carry <see cref="LabRun.Prefix"/>.
/// </summary>
public sealed class Lab : IAsyncDisposable
{
    private readonly List<NetNamespace> namespaces = [];
    private readonly List<LabProcess> processes = [];
    private readonly Lock gate = new();
    private bool disposed;

    private Lab()
    {
    }

    /// <summary>Creates an empty lab; throws <see cref="LabException"/> when not root.</summary>
    public static Lab Create()
    {
        if (!LabRun.IsRoot)
        {
            throw new LabException("the lab needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces; run the tests as root");
        }

        return new Lab();
    }

    public IReadOnlyList<NetNamespace> Namespaces
    {
        get
        {
            lock (gate)
            {
                return [.. namespaces];
            }
        }
    }

    /// <summary>
    /// Creates a namespace for <paramref name="role"/> ([a-z0-9], e.g. <c>client</c>) with loopback up, rp_filter off,
    /// IPv6 DAD off, MPTCP enabled and its blackhole detection off (a client that loses two MP_CAPABLE SYNs would
    /// otherwise turn MPTCP off for an hour).
    /// </summary>
    public async Task<NetNamespace> AddNamespaceAsync(string role, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var name = LabRun.NextName(role);
        await LabCommand.CheckAsync("ip", ["netns", "add", name], cancellationToken: cancellationToken).ConfigureAwait(false);
        var ns = new NetNamespace(this, name, role);
        lock (gate)
        {
            namespaces.Add(ns);
        }

        await ns.IpAsync("link", "set", "lo", "up").ConfigureAwait(false);
        // "default" values apply to interfaces created later; rp_filter uses max(all, interface).
        await ns.SysctlAsync(
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.mptcp.enabled", "1"),
            ("net.mptcp.blackhole_timeout", "0")).ConfigureAwait(false);
        return ns;
    }

    /// <summary>Creates a veth pair <paramref name="aDevice"/> in <paramref name="a"/> ↔ <paramref name="bDevice"/> in
    /// <paramref name="b"/>, both up. Device names are local to their namespace (max 15 characters).</summary>
    public async Task<VethLink> ConnectAsync(NetNamespace a, string aDevice, NetNamespace b, string bDevice)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        // Created inside a and moved to b at once: the names never exist in the root namespace, so parallel labs cannot clash.
        await a.IpAsync("link", "add", aDevice, "type", "veth", "peer", "name", bDevice, "netns", b.Name).ConfigureAwait(false);
        await a.IpAsync("link", "set", "dev", aDevice, "up").ConfigureAwait(false);
        await b.IpAsync("link", "set", "dev", bDevice, "up").ConfigureAwait(false);
        return new VethLink(a, aDevice, b, bDevice);
    }

    internal void Track(LabProcess process)
    {
        lock (gate)
        {
            processes.Add(process);
        }
    }

    /// <summary>Stops every process started in this lab, then deletes its namespaces. Never throws; safe to call twice.</summary>
    private static async Task StopQuietlyAsync(LabProcess process)
    {
        try
        {
            await process.DisposeAsync().ConfigureAwait(false);
        }
        catch (LabException)
        {
            // Best effort: the namespace deletion still runs.
        }
    }

    public async ValueTask DisposeAsync()
    {
        List<LabProcess> toStop;
        List<NetNamespace> toDelete;
        lock (gate)
        {
            disposed = true;
            toStop = [.. processes];
            toDelete = [.. namespaces];
            processes.Clear();
            namespaces.Clear();
        }

        // All at once: each may take its grace and then the wait after SIGKILL, and one after another a loaded
        // machine's teardown took longer than a caller's patience (the demo's Ctrl-C, once in a CI run).
        await Task.WhenAll(toStop.Select(StopQuietlyAsync)).ConfigureAwait(false);

        foreach (var ns in toDelete)
        {
            try
            {
                await LabRun.DeleteNamespaceAsync(ns.Name, CancellationToken.None).ConfigureAwait(false);
            }
            catch (LabException)
            {
                // The run fixture sweeps whatever is left by prefix.
            }
        }
    }
}
