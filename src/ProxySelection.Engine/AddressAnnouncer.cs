using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using ProxySelection.Interception.Rules;

namespace ProxySelection.Engine;

/// <summary>An in-kernel path manager endpoint (<c>ip mptcp endpoint</c>): the kernel's id and the address.</summary>
public readonly record struct MptcpEndpoint(int Id, IPAddress Address)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Address} id {Id}");
}

/// <summary>
/// Spec §7.8.1: the downgrade holder announces operator-configured addresses of its own to its MPTCP clients (ADD_ADDR),
/// so their joins end at the holder whatever the routing toward S, and withdraws them (REMOVE_ADDR) before it goes.
/// Linux's in-kernel path manager does both: an endpoint with the <c>signal</c> flag is announced on every MPTCP
/// connection of the namespace once it is established (measured on 6.18: the client joins the address on the original
/// port, and the join reaches the transparent listener like any other), and deleting it sends REMOVE_ADDR and closes
/// the subflows on it. The endpoints this proxy added are recorded in a file per chain prefix and network namespace,
/// so stop and <c>proxysel cleanup</c> remove exactly those and never an operator's own.
/// </summary>
public sealed class AddressAnnouncer(IReadOnlyList<IPAddress> addresses, string recordPath, ICommandRunner runner, ILogger log)
{
    private readonly Lock _lock = new();
    private List<MptcpEndpoint> _added = [];

    /// <summary>The configuration key the addresses come from, as errors name it.</summary>
    public const string Key = "Proxy:AnnounceAddresses";

    /// <summary>The endpoints this instance added and has not withdrawn.</summary>
    public IReadOnlyList<MptcpEndpoint> Announced
    {
        get
        {
            lock (_lock)
            {
                return [.. _added];
            }
        }
    }

    /// <summary>
    /// Where a proxy with <paramref name="chainPrefix"/> in this network namespace records its endpoints: next to the
    /// control socket, named by the namespace's inode as well, since two namespaces may run the same prefix.
    /// </summary>
    public static string RecordPathFor(string chainPrefix)
    {
        string netns;
        try
        {
            // "net:[4026531833]"
            netns = new string([.. (File.ResolveLinkTarget("/proc/self/ns/net", returnFinalTarget: false)?.Name ?? "net").Where(char.IsAsciiDigit)]);
        }
        catch (IOException)
        {
            netns = "";
        }

        return $"/run/proxysel/{chainPrefix}-{(netns.Length > 0 ? netns : "net")}.endpoints";
    }

    /// <summary>The addresses of this namespace's interfaces (what "an address of its own" means).</summary>
    public static IReadOnlySet<IPAddress> LocalAddresses() =>
        NetworkInterface.GetAllNetworkInterfaces().SelectMany(i => i.GetIPProperties().UnicastAddresses).Select(u => u.Address).ToHashSet();

    /// <summary>The configured addresses that are not on an interface of this host (empty when all are): announcing one would send clients elsewhere.</summary>
    public IReadOnlyList<IPAddress> NotLocal(IReadOnlySet<IPAddress> local) => [.. addresses.Where(a => !local.Contains(a))];

    /// <summary>
    /// Removes leftovers of a previous run with the same record, then adds a <c>signal</c> endpoint per address (one that
    /// exists already belongs to the operator: left alone, and not announced by this proxy) and records each.
    /// </summary>
    /// <exception cref="InterceptionRulesException">the <c>ip</c> tool refused.</exception>
    public async Task AnnounceAsync(CancellationToken cancellationToken)
    {
        await CleanupAsync(recordPath, runner, cancellationToken).ConfigureAwait(false);
        // What the kernel would not delete is still recorded, and still ours: it announces its address already.
        var leftover = ReadRecord(recordPath);
        lock (_lock)
        {
            _added.AddRange(leftover);
        }

        var existing = await ListAsync(runner, cancellationToken).ConfigureAwait(false);
        foreach (var address in addresses)
        {
            if (leftover.Any(e => e.Address.Equals(address)))
            {
                continue;
            }

            var foreign = existing.Where(e => e.Address.Equals(address)).ToList();
            if (foreign.Count > 0)
            {
                AnnounceLog.NotOurs(log, foreign[0].ToString());
                continue;
            }

            var add = await runner.RunAsync("ip", ["mptcp", "endpoint", "add", address.ToString(), "signal"], null, cancellationToken).ConfigureAwait(false);
            if (!add.Succeeded)
            {
                throw new InterceptionRulesException($"{Key}: ip mptcp endpoint add {address} signal failed: {add.StdErr.Trim()}");
            }

            var now = await ListAsync(runner, cancellationToken).ConfigureAwait(false);
            var endpoint = now.First(e => e.Address.Equals(address));
            lock (_lock)
            {
                _added.Add(endpoint);
                WriteRecord(recordPath, _added);
            }

            AnnounceLog.Announced(log, endpoint.ToString());
        }
    }

    /// <summary>Deletes the endpoints this instance added (the kernel sends REMOVE_ADDR for each) and the record. Idempotent.</summary>
    public async Task WithdrawAsync(CancellationToken cancellationToken)
    {
        List<MptcpEndpoint> added;
        lock (_lock)
        {
            added = _added;
            _added = [];
        }

        if (added.Count == 0)
        {
            return;
        }

        var (removed, left) = await RemoveAsync(added, runner, cancellationToken).ConfigureAwait(false);
        lock (_lock)
        {
            // What the kernel would not delete stays ours: recorded, so a later withdraw or cleanup finds it.
            _added = [.. left, .. _added];
            KeepRecord(recordPath, _added);
        }

        AnnounceLog.Withdrawn(log, removed);
    }

    /// <summary>
    /// <c>proxysel cleanup</c>: deletes the endpoints recorded in <paramref name="path"/> that still exist with the same id
    /// and address (the operator's are never in the record), then the record. Returns how many were deleted.
    /// </summary>
    public static async Task<int> CleanupAsync(string path, ICommandRunner runner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(runner);
        var recorded = ReadRecord(path);
        if (recorded.Count == 0)
        {
            DeleteRecord(path);
            return 0;
        }

        var (removed, left) = await RemoveAsync(recorded, runner, cancellationToken).ConfigureAwait(false);
        KeepRecord(path, left);
        return removed;
    }

    /// <summary>
    /// Deletes those of <paramref name="endpoints"/> that still exist with the same id and address; returns how many went
    /// and the ones the kernel refused to delete (still there, still ours).
    /// </summary>
    private static async Task<(int Removed, List<MptcpEndpoint> Left)> RemoveAsync(IReadOnlyList<MptcpEndpoint> endpoints, ICommandRunner runner,
        CancellationToken cancellationToken)
    {
        var existing = await ListAsync(runner, cancellationToken).ConfigureAwait(false);
        int removed = 0;
        var left = new List<MptcpEndpoint>();
        foreach (var endpoint in endpoints.Where(existing.Contains))
        {
            var delete = await runner.RunAsync("ip", ["mptcp", "endpoint", "delete", "id", endpoint.Id.ToString(CultureInfo.InvariantCulture)], null, cancellationToken)
                .ConfigureAwait(false);
            if (delete.Succeeded)
            {
                removed++;
            }
            else
            {
                left.Add(endpoint);
            }
        }

        return (removed, left);
    }

    /// <summary>The record lists exactly <paramref name="endpoints"/>; none: no record.</summary>
    private static void KeepRecord(string path, IReadOnlyList<MptcpEndpoint> endpoints)
    {
        if (endpoints.Count == 0)
        {
            DeleteRecord(path);
        }
        else
        {
            WriteRecord(path, endpoints);
        }
    }

    /// <summary>The namespace's endpoints, from <c>ip -j mptcp endpoint show</c>.</summary>
    public static async Task<IReadOnlyList<MptcpEndpoint>> ListAsync(ICommandRunner runner, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(runner);
        var show = await runner.RunAsync("ip", ["-j", "mptcp", "endpoint", "show"], null, cancellationToken).ConfigureAwait(false);
        if (!show.Succeeded)
        {
            throw new InterceptionRulesException($"ip -j mptcp endpoint show failed: {show.StdErr.Trim()}");
        }

        return ParseEndpoints(show.StdOut);
    }

    /// <summary>Reads <c>[{"address":"198.18.0.1","id":1,"signal":true}, ...]</c>; anything else is no endpoint.</summary>
    public static IReadOnlyList<MptcpEndpoint> ParseEndpoints(string json)
    {
        var endpoints = new List<MptcpEndpoint>();
        try
        {
            using var document = JsonDocument.Parse(string.IsNullOrWhiteSpace(json) ? "[]" : json);
            if (document.RootElement.ValueKind != JsonValueKind.Array)
            {
                return endpoints;
            }

            foreach (var element in document.RootElement.EnumerateArray())
            {
                if (element.ValueKind == JsonValueKind.Object
                    && element.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.Number && id.TryGetInt32(out int number)
                    && element.TryGetProperty("address", out var address) && address.ValueKind == JsonValueKind.String
                    && IPAddress.TryParse(address.GetString(), out var ip))
                {
                    endpoints.Add(new MptcpEndpoint(number, ip));
                }
            }
        }
        catch (JsonException)
        {
        }

        return endpoints;
    }

    private static void DeleteRecord(string path)
    {
        // File.Delete throws when the folder is missing, which on a host that never announced is the normal case.
        if (File.Exists(path))
        {
            File.Delete(path);
        }
    }

    private static void WriteRecord(string path, IEnumerable<MptcpEndpoint> endpoints)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllLines(path, endpoints.Select(e => string.Create(CultureInfo.InvariantCulture, $"{e.Id} {e.Address}")));
    }

    /// <summary>The record's "id address" lines; a missing file or a line that does not read is nothing recorded.</summary>
    public static IReadOnlyList<MptcpEndpoint> ReadRecord(string path)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }

        var endpoints = new List<MptcpEndpoint>();
        foreach (var line in lines)
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int id) && IPAddress.TryParse(parts[1], out var address))
            {
                endpoints.Add(new MptcpEndpoint(id, address));
            }
        }

        return endpoints;
    }
}

/// <summary>The announcer's lines. Event ids 300..309.</summary>
public static partial class AnnounceLog
{
    [LoggerMessage(300, LogLevel.Information, "proxysel: announcing {Endpoint} to MPTCP clients (ADD_ADDR)")]
    public static partial void Announced(ILogger logger, string endpoint);

    [LoggerMessage(301, LogLevel.Information, "proxysel: withdrew {Count} announced address(es) (REMOVE_ADDR)")]
    public static partial void Withdrawn(ILogger logger, int count);

    [LoggerMessage(302, LogLevel.Warning, "proxysel: not announcing {Endpoint}: the endpoint exists and is not this proxy's")]
    public static partial void NotOurs(ILogger logger, string endpoint);

    [LoggerMessage(303, LogLevel.Warning, "proxysel: could not withdraw the announced addresses ({Reason}); proxysel cleanup removes them")]
    public static partial void WithdrawFailed(ILogger logger, string reason);
}
