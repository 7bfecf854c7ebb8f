using System.Globalization;
using System.Runtime.InteropServices;

namespace ProxySelection.Lab;

/// <summary>How <see cref="NetNamespace.SetRateLimitAsync"/> shapes egress.</summary>
public enum RateShaper
{
    /// <summary>HTB root with one default class at the rate (rate = ceil).</summary>
    Htb,

    /// <summary>Token bucket filter at the root.</summary>
    Tbf,
}

/// <summary>
/// A network namespace the lab created (<c>/run/netns/&lt;Name&gt;</c>). Every command bounded by a timeout;
/// processes started here are stopped by the owning <see cref="Lab"/> when it is disposed.
/// </summary>
public sealed class NetNamespace
{
    private readonly Lab owner;

    internal NetNamespace(Lab owner, string name, string role)
    {
        this.owner = owner;
        Name = name;
        Role = role;
    }

    /// <summary>The namespace name (<see cref="LabRun.Prefix"/> + sequence + role).</summary>
    public string Name { get; }

    public string Role { get; }

    /// <summary>Path of the namespace file, for setns(2) or <c>nsenter --net=</c>.</summary>
    public string Path => $"/run/netns/{Name}";

    public override string ToString() => Name;

    /// <summary>Runs a command inside the namespace (<c>ip netns exec</c>) and returns its result (non-zero exit not thrown).</summary>
    public Task<CommandResult> RunAsync(string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null,
        CancellationToken cancellationToken = default) =>
        LabCommand.RunAsync("ip", ["netns", "exec", Name, file, .. args], timeout, stdin, cancellationToken);

    /// <summary>Runs a command inside the namespace; throws <see cref="LabException"/> unless it exits 0. Returns stdout.</summary>
    public async Task<string> CheckAsync(string file, IEnumerable<string> args, TimeSpan? timeout = null, string? stdin = null,
        CancellationToken cancellationToken = default)
    {
        var r = await RunAsync(file, args, timeout, stdin, cancellationToken).ConfigureAwait(false);
        return r.EnsureSuccess().StdOut;
    }

    /// <summary><c>ip -n NAME args...</c>, throwing on failure. Returns stdout.</summary>
    public Task<string> IpAsync(params string[] args) =>
        LabCommand.CheckAsync("ip", ["-n", Name, .. args]);

    /// <summary>Runs several <c>ip</c> commands in one process (<c>ip -n NAME -batch -</c>), one per line.</summary>
    public Task<string> IpBatchAsync(IEnumerable<string> lines, CancellationToken cancellationToken = default) =>
        LabCommand.CheckAsync("ip", ["-n", Name, "-batch", "-"], stdin: string.Join('\n', lines) + "\n", cancellationToken: cancellationToken);

    /// <summary>Sets sysctls inside the namespace (e.g. <c>("net.mptcp.enabled", "1")</c>).</summary>
    public Task<string> SysctlAsync(params (string Key, string Value)[] settings) =>
        CheckAsync("sysctl", ["-q", "-w", .. settings.Select(s => $"{s.Key}={s.Value}")]);

    /// <summary>Reads one sysctl inside the namespace.</summary>
    public async Task<string> ReadSysctlAsync(string key) =>
        (await CheckAsync("sysctl", ["-n", key]).ConfigureAwait(false)).Trim();

    /// <summary>Adds an address (<c>198.18.1.2/24</c> or <c>2001:db8:1::2/64</c>; IPv6 without DAD so it is usable at once).</summary>
    public Task<string> AddAddressAsync(string device, string cidr) =>
        cidr.Contains(':', StringComparison.Ordinal)
            ? IpAsync("-6", "addr", "add", cidr, "dev", device, "nodad")
            : IpAsync("addr", "add", cidr, "dev", device);

    /// <summary>Adds a route; <paramref name="destination"/> may be <c>default</c>. Family follows the addresses given.</summary>
    public Task<string> AddRouteAsync(string destination, string? via = null, string? device = null, int? table = null)
    {
        var v6 = destination.Contains(':', StringComparison.Ordinal) || (via?.Contains(':', StringComparison.Ordinal) ?? false);
        List<string> args = [v6 ? "-6" : "-4", "route", "add", destination];
        if (via is not null)
        {
            args.AddRange(["via", via]);
        }

        if (device is not null)
        {
            args.AddRange(["dev", device]);
        }

        if (table is not null)
        {
            args.AddRange(["table", table.Value.ToString(CultureInfo.InvariantCulture)]);
        }

        return IpAsync([.. args]);
    }

    /// <summary>Turns IPv4 and IPv6 forwarding on.</summary>
    public Task<string> EnableForwardingAsync() =>
        SysctlAsync(("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1"));

    /// <summary><c>ip mptcp limits set subflow N add_addr_accepted M</c>.</summary>
    public Task<string> SetMptcpLimitsAsync(int subflows, int addAddrAccepted) =>
        IpAsync("mptcp", "limits", "set", "subflow", subflows.ToString(CultureInfo.InvariantCulture),
            "add_addr_accepted", addAddrAccepted.ToString(CultureInfo.InvariantCulture));

    /// <summary><c>ip mptcp endpoint add ADDRESS dev DEVICE FLAGS</c> (flags e.g. <c>subflow</c>, <c>signal</c>, <c>backup</c>).</summary>
    public Task<string> AddMptcpEndpointAsync(string address, string device, params string[] flags) =>
        IpAsync(["mptcp", "endpoint", "add", address, "dev", device, .. (flags.Length == 0 ? ["subflow"] : flags)]);

    /// <summary>
    /// Limits egress of <paramref name="device"/> to <paramref name="rate"/> (tc syntax, e.g. <c>50mbit</c>), replacing any
    /// root qdisc. HTB: one default class; TBF: burst sized for the rate, 50 ms queue.
    /// </summary>
    public async Task SetRateLimitAsync(string device, string rate, RateShaper shaper = RateShaper.Htb)
    {
        await ClearRateLimitAsync(device).ConfigureAwait(false);
        if (shaper == RateShaper.Htb)
        {
            await LabCommand.CheckAsync("tc", ["-n", Name, "qdisc", "add", "dev", device, "root", "handle", "1:", "htb", "default", "10"]).ConfigureAwait(false);
            await LabCommand.CheckAsync("tc", ["-n", Name, "class", "add", "dev", device, "parent", "1:", "classid", "1:10", "htb",
                "rate", rate, "ceil", rate]).ConfigureAwait(false);
        }
        else
        {
            await LabCommand.CheckAsync("tc", ["-n", Name, "qdisc", "add", "dev", device, "root", "tbf", "rate", rate,
                "burst", "64kb", "latency", "50ms"]).ConfigureAwait(false);
        }
    }

    /// <summary>Removes the root qdisc of <paramref name="device"/> (no error when there is none).</summary>
    public Task<CommandResult> ClearRateLimitAsync(string device) =>
        LabCommand.RunAsync("tc", ["-n", Name, "qdisc", "del", "dev", device, "root"]);

    /// <summary>Sets a link up or down (e.g. to take one path away mid-transfer).</summary>
    public Task<string> SetLinkAsync(string device, bool up) => IpAsync("link", "set", "dev", device, up ? "up" : "down");

    /// <summary>
    /// Starts a long-running process inside the namespace as leader of its own process group. The owning lab stops it
    /// on dispose if the caller has not.
    /// </summary>
    public LabProcess StartProcess(string file, IEnumerable<string> args)
    {
        var p = LabProcess.Start(Name, file, args);
        owner.Track(p);
        return p;
    }

    /// <summary>
    /// Starts tcpdump on <paramref name="device"/> (any interface in this namespace, or <c>any</c>) writing
    /// <paramref name="pcapPath"/>; returns once tcpdump reports it is listening.
    /// </summary>
    public Task<PacketCapture> StartCaptureAsync(string device, string pcapPath, string? filter = null, TimeSpan? readyTimeout = null,
        CancellationToken cancellationToken = default) =>
        PacketCapture.StartAsync(this, device, pcapPath, filter, readyTimeout ?? TimeSpan.FromSeconds(10), cancellationToken);

    /// <summary>
    /// Runs <paramref name="action"/> on a dedicated thread that has entered this namespace with setns(2). Sockets and
    /// netlink sockets created by the delegate belong to this namespace for their whole life, whichever thread later
    /// uses them (async continuations run on pool threads in the original namespace — create sockets inside, use them
    /// anywhere). The thread returns to its original namespace before it ends.
    /// </summary>
    public Task<T> RunInNamespaceAsync<T>(Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var path = Path;
        var thread = new Thread(() =>
        {
            try
            {
                done.SetResult(InNamespace(path, action));
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        })
        {
            IsBackground = true,
            Name = $"netns {Name}",
        };
        thread.Start();
        return done.Task;
    }

    /// <summary>As <see cref="RunInNamespaceAsync{T}(Func{T})"/> for a delegate without a result.</summary>
    public Task RunInNamespaceAsync(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        return RunInNamespaceAsync(() =>
        {
            action();
            return true;
        });
    }

    private static T InNamespace<T>(string path, Func<T> action)
    {
        // The thread's own namespace (not the process's): setns(CLONE_NEWNET) is per thread.
        using var original = File.OpenHandle("/proc/thread-self/ns/net");
        using var target = File.OpenHandle(path);
        Enter(target, path);
        try
        {
            return action();
        }
        finally
        {
            Enter(original, "original namespace");
        }
    }

    private static void Enter(Microsoft.Win32.SafeHandles.SafeFileHandle handle, string what)
    {
        var added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            if (LabNative.setns((int)handle.DangerousGetHandle(), LabNative.CloneNewNet) != 0)
            {
                throw new LabException($"setns({what}) failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }
}
