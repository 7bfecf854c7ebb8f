using System.Globalization;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace ProxySelection.Lab;

/// <summary>
/// The per-process run identity every lab namespace name starts with: <c>ps</c> + 6 random hex digits + <c>-</c> +
/// the creating pid, e.g. <c>ps3fa01c-4242-</c>. The random part keeps parallel runs apart; the pid lets
/// <see cref="SweepStaleAsync"/> recognise namespaces whose creator crashed.
/// </summary>
public static partial class LabRun
{
    private static int sequence;

    /// <summary>This process's prefix, e.g. <c>ps3fa01c-4242-</c>.</summary>
    public static string Prefix { get; } =
        $"ps{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3))}-{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-";

    /// <summary>A fresh namespace name for <paramref name="role"/>: prefix + sequence number + role.</summary>
    public static string NextName(string role)
    {
        ArgumentException.ThrowIfNullOrEmpty(role);
        if (!RoleRegex().IsMatch(role))
        {
            throw new ArgumentException("role must be 1-20 characters of [a-z0-9]", nameof(role));
        }

        return $"{Prefix}{Interlocked.Increment(ref sequence).ToString(CultureInfo.InvariantCulture)}{role}";
    }

    /// <summary>True when the caller runs as root (the lab needs CAP_NET_ADMIN and CAP_SYS_ADMIN).</summary>
    public static bool IsRoot => LabNative.geteuid() == 0;

    /// <summary>All network namespace names currently present (<c>ip netns list</c>).</summary>
    public static async Task<IReadOnlyList<string>> ListNamespacesAsync(CancellationToken cancellationToken = default)
    {
        var output = await LabCommand.CheckAsync("ip", ["netns", "list"], cancellationToken: cancellationToken).ConfigureAwait(false);
        // Lines look like "name" or "name (id: 3)".
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => l.Split(' ', 2)[0])
            .ToList();
    }

    /// <summary>Deletes every namespace carrying this process's <see cref="Prefix"/>. Safe to call repeatedly.</summary>
    public static async Task<int> DeleteOwnNamespacesAsync(CancellationToken cancellationToken = default)
    {
        var names = await ListNamespacesAsync(cancellationToken).ConfigureAwait(false);
        var deleted = 0;
        foreach (var name in names.Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)))
        {
            if (await DeleteNamespaceAsync(name, cancellationToken).ConfigureAwait(false))
            {
                deleted++;
            }
        }

        return deleted;
    }

    /// <summary>
    /// Deletes lab namespaces left by crashed runs: names of our form (<c>ps</c>+6 hex+<c>-</c>+pid+<c>-</c>) whose
    /// creating pid no longer exists. Namespaces of live runs (other helpers, parallel test hosts) are never touched.
    /// </summary>
    public static async Task<int> SweepStaleAsync(CancellationToken cancellationToken = default)
    {
        var names = await ListNamespacesAsync(cancellationToken).ConfigureAwait(false);
        var deleted = 0;
        foreach (var name in names)
        {
            var m = NameRegex().Match(name);
            if (!m.Success || !int.TryParse(m.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            if (pid == Environment.ProcessId || Directory.Exists($"/proc/{pid}"))
            {
                continue;
            }

            if (await DeleteNamespaceAsync(name, cancellationToken).ConfigureAwait(false))
            {
                deleted++;
            }
        }

        return deleted;
    }

    internal static async Task<bool> DeleteNamespaceAsync(string name, CancellationToken cancellationToken)
    {
        // Processes still inside keep the namespace alive after the name is gone; callers stop theirs first.
        var r = await LabCommand.RunAsync("ip", ["netns", "delete", name], cancellationToken: cancellationToken).ConfigureAwait(false);
        return r.Succeeded;
    }

    [GeneratedRegex("^ps[0-9a-f]{6}-([0-9]{1,9})-")]
    private static partial Regex NameRegex();

    [GeneratedRegex("^[a-z0-9]{1,20}$")]
    private static partial Regex RoleRegex();
}
