namespace Glm.Engine;

/// <summary>
/// Owns the KV pool's blocks: a free list, reference counts, and the prefix cache. A full block that has been
/// computed is registered under a hash of its tokens chained with its predecessors' hash; a later sequence whose
/// prompt starts with the same tokens reuses it. Freed blocks keep their contents and hash until they are handed
/// out again (oldest freed first), so a finished conversation's prefix stays reusable while memory allows.
/// </summary>
public sealed class BlockManager
{
    private readonly int[] _refCount;
    private readonly ulong[] _hash;
    private readonly bool[] _hashed;
    private readonly int[][] _blockTokens;
    private readonly LinkedList<int> _free = new();
    private readonly LinkedListNode<int>?[] _freeNode;
    private readonly Dictionary<ulong, int> _cached = new();
    /// <summary>Copies one block's KV to another (copy-on-write); supplied by the model runner.</summary>
    private readonly Action<int, int>? _copyBlock;

    public BlockManager(int numBlocks, int blockSize, bool enablePrefixCaching, Action<int, int>? copyBlock = null)
    {
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        PrefixCaching = enablePrefixCaching;
        _copyBlock = copyBlock;
        _refCount = new int[numBlocks];
        _hash = new ulong[numBlocks];
        _hashed = new bool[numBlocks];
        _blockTokens = new int[numBlocks][];
        _freeNode = new LinkedListNode<int>?[numBlocks];
        for (int b = 0; b < numBlocks; b++) _freeNode[b] = _free.AddLast(b);
    }

    public int NumBlocks { get; }
    public int BlockSize { get; }
    public bool PrefixCaching { get; }
    public int FreeBlocks => _free.Count;
    public int UsedBlocks => NumBlocks - _free.Count;
    public double Usage => NumBlocks == 0 ? 0 : (double)UsedBlocks / NumBlocks;
    /// <summary>Prompt tokens looked up in the prefix cache, and those found (vLLM counts tokens).</summary>
    public long PrefixQueries { get; private set; }
    public long PrefixHits { get; private set; }

    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    /// <summary>
    /// First allocation of a waiting sequence: reuses cached full blocks of its prefix (never the block holding
    /// the last token, whose logits must be computed) and sets NumComputed to the reused length.
    /// </summary>
    public void AllocatePrefix(Sequence seq)
    {
        if (seq.BlockTable.Count != 0) throw new InvalidOperationException("sequence already has blocks");
        seq.NumCachedTokens = 0;
        seq.NumComputed = 0;
        if (!PrefixCaching) return;
        int fullBlocks = (seq.Length - 1) / BlockSize;
        PrefixQueries += seq.Length;
        ulong hash = 0;
        for (int i = 0; i < fullBlocks; i++)
        {
            hash = HashBlock(hash, seq.Tokens, i);
            if (!_cached.TryGetValue(hash, out int block) || !SameTokens(block, seq.Tokens, i)) break;
            Acquire(block);
            seq.BlockTable.Add(block);
            seq.NumComputed += BlockSize;
        }
        seq.NumCachedTokens = seq.NumComputed;
        PrefixHits += seq.NumCachedTokens;
    }

    /// <summary>Makes sure the sequence has blocks for its first <paramref name="tokens"/> tokens; false if the pool is short.</summary>
    public bool EnsureCapacity(Sequence seq, int tokens)
    {
        int needed = BlocksFor(tokens) - seq.BlockTable.Count;
        // A shared partial last block about to be written needs a private copy.
        bool cow = seq.BlockTable.Count > 0 && seq.NumComputed % BlockSize != 0 && _refCount[seq.BlockTable[^1]] > 1 && tokens > seq.NumComputed;
        if (needed + (cow ? 1 : 0) > _free.Count) return false;
        if (cow)
        {
            int shared = seq.BlockTable[^1];
            int copy = TakeFree();
            _copyBlock?.Invoke(shared, copy);
            _refCount[shared]--;
            seq.BlockTable[^1] = copy;
        }
        for (int i = 0; i < needed; i++) seq.BlockTable.Add(TakeFree());
        return true;
    }

    /// <summary>Registers the sequence's newly completed full blocks in the prefix cache.</summary>
    public void RegisterComputedBlocks(Sequence seq)
    {
        if (!PrefixCaching) return;
        int full = Math.Min(seq.NumComputed / BlockSize, seq.BlockTable.Count);
        ulong hash = 0;
        for (int i = 0; i < full; i++)
        {
            int block = seq.BlockTable[i];
            hash = _hashed[block] ? _hash[block] : HashBlock(hash, seq.Tokens, i);
            if (_hashed[block]) continue;
            if (_cached.ContainsKey(hash)) continue; // an identical block is already cached; keep this one private
            _hash[block] = hash;
            _hashed[block] = true;
            _blockTokens[block] = seq.Tokens.GetRange(i * BlockSize, BlockSize).ToArray();
            _cached[hash] = block;
        }
    }

    /// <summary>Shares all of <paramref name="parent"/>'s blocks with <paramref name="child"/> (n &gt; 1 sampling).</summary>
    public void Fork(Sequence parent, Sequence child)
    {
        foreach (int b in parent.BlockTable) Acquire(b);
        child.BlockTable.AddRange(parent.BlockTable);
        child.NumComputed = parent.NumComputed;
    }

    public void Free(Sequence seq)
    {
        // Release in reverse so a prefix's later blocks are evicted before its earlier ones.
        for (int i = seq.BlockTable.Count - 1; i >= 0; i--)
        {
            int b = seq.BlockTable[i];
            if (--_refCount[b] == 0) _freeNode[b] = _free.AddLast(b);
        }
        seq.BlockTable.Clear();
        seq.NumComputed = 0;
    }

    private void Acquire(int block)
    {
        if (_refCount[block]++ == 0)
        {
            _free.Remove(_freeNode[block]!);
            _freeNode[block] = null;
        }
    }

    private int TakeFree()
    {
        int b = _free.First!.Value;
        _free.RemoveFirst();
        _freeNode[b] = null;
        if (_hashed[b])
        {
            if (_cached.TryGetValue(_hash[b], out int owner) && owner == b) _cached.Remove(_hash[b]);
            _hashed[b] = false;
            _blockTokens[b] = null!;
        }
        _refCount[b] = 1;
        return b;
    }

    private bool SameTokens(int block, List<int> tokens, int blockIndex)
    {
        var stored = _blockTokens[block];
        for (int j = 0; j < BlockSize; j++) if (stored[j] != tokens[blockIndex * BlockSize + j]) return false;
        return true;
    }

    private ulong HashBlock(ulong previous, List<int> tokens, int blockIndex)
    {
        ulong h = previous ^ 0x9E3779B97F4A7C15UL;
        for (int j = 0; j < BlockSize; j++)
        {
            h ^= (uint)tokens[blockIndex * BlockSize + j];
            h *= 0x100000001B3UL;
            h ^= h >> 29;
        }
        return h;
    }

    /// <summary>Checks the pool's accounting: every block is either free or referenced, never both.</summary>
    public bool AccountingIsExact(out string problem)
    {
        int freeCount = 0;
        foreach (int b in _free)
        {
            freeCount++;
            if (_refCount[b] != 0) { problem = $"block {b} is free with {_refCount[b]} references"; return false; }
        }
        for (int b = 0; b < NumBlocks; b++)
            if (_refCount[b] < 0 || (_refCount[b] == 0) != (_freeNode[b] is not null)) { problem = $"block {b} has inconsistent state"; return false; }
        problem = "";
        return freeCount == _free.Count;
    }
}
